"""The event pipeline on the local stack: upload-complete -> DEPLOYED, and a duplicate storm.

Latency: the tiny model uploaded N times under new names (settle 0); measured from the end of
the upload to the DEPLOYED notification, with the share spent serving-side (Vertex emulator
deploy: engine start). Storm: 200 duplicate finalize events for one complete folder, 16 at a
time, POSTed to the validate function; wall time, and the deploy calls and DEPLOYED
notifications they caused (target: exactly one each).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

RUNS = 3
STORM, CONCURRENCY = 200, 16


def deployed_event(subscriber, name: str):
    """The DEPLOYED notification of model `name` the subscriber has received, or None."""
    return next(
        (
            m
            for m in subscriber.messages
            if m.attributes.get("model") == name and m.attributes.get("state") == "DEPLOYED"
        ),
        None,
    )


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
    work = Path(tempfile.mkdtemp(prefix="modeldrop-bench-pipeline-"))
    folder = build_tiny_model(work / "tiny", "llama")
    config = StackConfig(state_dir=work / "state", tick_seconds=1.0)
    with LocalStack(config) as stack:
        subscriber = EventSubscriber(config.project, config.events_topic, "bench")
        storage = default_client()
        latencies = []
        for run_number in range(RUNS):
            name = f"bench-{run_number}"
            upload_folder(storage, folder, config.bucket, f"{config.root_prefix}{name}")
            uploaded = time.time()
            subscriber.wait_for(lambda _, n=name: deployed_event(subscriber, n) is not None, 300)
            latencies.append(deployed_event(subscriber, name).publish_time.timestamp() - uploaded)
        calls_before = requests.get(f"{stack.urls['vertex']}/emulator/state", timeout=10).json()
        name = "bench-0"
        last = f"{config.root_prefix}{name}/{sorted(p.name for p in folder.iterdir())[-1]}"

        def fire(number: int) -> int:
            event = CloudEvent(
                {
                    "type": "google.cloud.storage.object.v1.finalized",
                    "id": f"storm-{number}",
                    "source": f"//storage.googleapis.com/projects/_/buckets/{config.bucket}",
                },
                {"bucket": config.bucket, "name": last},
            )
            headers, body = to_binary(event)
            return requests.post(
                stack.urls["validate"], data=body, headers=headers, timeout=120
            ).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            codes = list(pool.map(fire, range(STORM)))
        storm_s = time.perf_counter() - started
        time.sleep(3)
        calls_after = requests.get(f"{stack.urls['vertex']}/emulator/state", timeout=10).json()
        deployed_events = sum(
            1
            for m in subscriber.messages
            if m.attributes.get("model") == name and m.attributes.get("state") == "DEPLOYED"
        )
        subscriber.close()
    extra_deploys = calls_after["deploy_calls"] - calls_before["deploy_calls"]
    print(
        f"   upload complete -> DEPLOYED: median {statistics.median(latencies):.2f} s "
        f"(runs: {', '.join(f'{x:.2f}' for x in latencies)})"
    )
    print(
        f"   storm: {STORM} duplicate finalize events, {CONCURRENCY} at a time: {storm_s:.2f} s "
        f"({STORM / storm_s:.0f}/s), all {set(codes)}; extra Deploy calls {extra_deploys}, "
        f"DEPLOYED notifications {deployed_events}"
    )
    return {
        "latency_s": latencies,
        "latency_median_s": statistics.median(latencies),
        "storm_events": STORM,
        "storm_concurrency": CONCURRENCY,
        "storm_wall_s": storm_s,
        "storm_extra_deploy_calls": extra_deploys,
        "deployed_notifications": deployed_events,
        "targets": {
            "storm: no extra Deploy call": extra_deploys == 0,
            "storm: exactly one DEPLOYED notification": deployed_events == 1,
            "storm: every event acknowledged (200)": set(codes) == {200},
        },
    }
