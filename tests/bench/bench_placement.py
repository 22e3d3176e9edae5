"""Placement on the local stack: upload-complete -> DEPLOYED directly, and with one fallback.

The tiny model on the real engine, MODELDROP_REGIONS=us-central1,europe-west4, reconcile ticking
every second, RUNS uploads per case: `direct` (the first candidate lands), `no_quota` (no L4
quota in us-central1: RecommendSpec rules it out before the first attempt) and `stockout` (the
first attempt's operation stocks out, an injected fault RecommendSpec cannot foresee: its
endpoint is deleted and the second region's candidate deployed). Measured from the end of the
upload to the DEPLOYED notification, which now includes the smoke test (its request's
latency is reported too).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import requests

from tests.bench.bench_pipeline import deployed_event

RUNS = 3
REGIONS = "us-central1,europe-west4"
CASES = {
    "direct": ({}, []),
    "no_quota": ({"us-central1": {"NVIDIA_L4": {"quota": 0}}}, []),
    "stockout": ({}, [{"status": "stockout"}]),
}
PLACEMENT = "placement: {max_hourly_usd: 0.9}\n"  # g2-standard-4 in each region
MAX_FALLBACK_OVERHEAD_S = 10.0  # the stockout case over the direct one (median)


def run() -> dict:
    from modeldrop.adapters.gcs_folder import default_client
    from modeldrop.local.emulators import missing_emulators
    from modeldrop.local.stack import LocalStack, StackConfig
    from modeldrop.local.subscriber import EventSubscriber
    from modeldrop.local.tiny_model import build_tiny_model
    from modeldrop.local.uploader import upload_folder

    if reason := missing_emulators():
        print(f"   SKIPPED: {reason}")
        return {"skipped": reason, "targets": {}}
    work = Path(tempfile.mkdtemp(prefix="modeldrop-bench-placement-"))
    folder = build_tiny_model(work / "tiny", "llama")
    (folder / "modeldrop.yaml").write_text(PLACEMENT)
    config = StackConfig(state_dir=work / "state", tick_seconds=1.0)
    os.environ["MODELDROP_REGIONS"] = REGIONS  # passed on to the functions
    seconds: dict[str, list[float]] = {case: [] for case in CASES}
    regions: dict[str, set[str]] = {case: set() for case in CASES}
    smoke_ms: list[int] = []  # the smoke test's request, part of every deploy above
    try:
        with LocalStack(config) as stack:
            vertex = stack.urls["vertex"]
            subscriber = EventSubscriber(config.project, config.events_topic, "bench-placement")
            storage = default_client()
            for run_number in range(RUNS):
                for case, (table, faults) in CASES.items():
                    requests.post(f"{vertex}/emulator/capacity", json=table, timeout=10)
                    for fault in faults:
                        requests.post(f"{vertex}/emulator/faults", json=fault, timeout=10)
                    name = f"place-{case.replace('_', '-')}-{run_number}"
                    upload_folder(storage, folder, config.bucket, f"{config.root_prefix}{name}")
                    uploaded = time.time()
                    subscriber.wait_for(
                        lambda _, n=name: deployed_event(subscriber, n) is not None, 300
                    )
                    seconds[case].append(
                        deployed_event(subscriber, name).publish_time.timestamp() - uploaded
                    )
                    status = requests.get(f"{stack.urls['api']}/v1/models/{name}", timeout=10)
                    regions[case].add(status.json()["placement"]["region"])
                    smoke_ms.append(status.json()["smoke_test"]["latency_ms"])
                    requests.delete(status.json()["links"]["self"], timeout=30)
            subscriber.close()
    finally:
        os.environ.pop("MODELDROP_REGIONS", None)
    medians = {case: statistics.median(values) for case, values in seconds.items()}
    for case, values in seconds.items():
        print(
            f"   {case:<9} upload complete -> DEPLOYED: median {medians[case]:.2f} s "
            f"(runs: {', '.join(f'{x:.2f}' for x in values)}) in {', '.join(sorted(regions[case]))}"
        )
    overhead = medians["stockout"] - medians["direct"]
    print(f"   smoke test request: median {statistics.median(smoke_ms)} ms (max {max(smoke_ms)})")
    return {
        "smoke_test_ms": smoke_ms,
        "seconds": seconds,
        "median_s": medians,
        "regions": {case: sorted(r) for case, r in regions.items()},
        "stockout_overhead_s": overhead,
        "targets": {
            "direct lands in the first region": regions["direct"] == {"us-central1"},
            "no_quota and stockout land in the second region": regions["no_quota"]
            == regions["stockout"]
            == {"europe-west4"},
            f"one stockout fallback adds < {MAX_FALLBACK_OVERHEAD_S:g} s (median)": overhead
            < MAX_FALLBACK_OVERHEAD_S,
        },
    }
