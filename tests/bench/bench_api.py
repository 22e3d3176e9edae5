"""Proxy overhead of the api function over calling the same Vertex endpoint directly.

The local stack with the echo engine (answers instantly), one tiny model DEPLOYED. The same
chat/completions body goes to the dedicated endpoint URL (https://{endpoint_dns}/v1beta1/
{endpoint}/chat/completions, verified with the emulator's CA) and through the api (POST
/v1/deployments/{id}/chat/completions), each over its own keep-alive requests.Session.
Unary: sequential requests, interleaved (the order rotates) so drift cancels; median and p99
of both, and of the OpenAI-compatible route (POST /v1/chat/completions, model = model name)
for comparison. Streaming: time to the first SSE `data:` event. Throughput: requests per
second with 8 concurrent clients, each path in turn.
Targets: overhead median <= 2 ms; first chunk within 5 ms of direct.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import requests

WARMUP, UNARY_RUNS, STREAM_RUNS = 50, 500, 200
CLIENTS, DURATION_S = 8, 10.0
BODY = {"messages": [{"role": "user", "content": "hello from the benchmark"}], "max_tokens": 16}
STREAM_BODY = {**BODY, "stream": True}
MODEL = "bench-api"


def _ms(seconds: float) -> float:
    return seconds * 1000


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _unary(session: requests.Session, url: str, body: dict[str, Any] = BODY) -> float:
    started = time.perf_counter()
    response = session.post(url, json=body, timeout=30)
    response.content  # noqa: B018 - read the whole body
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    return elapsed


def _first_chunk(
    session: requests.Session, url: str, body: dict[str, Any] = STREAM_BODY
) -> tuple[float, float]:
    """(seconds to the first `data:` event, seconds to the end of the stream)."""
    started = time.perf_counter()
    first = None
    seen = b""
    with session.post(url, json=body, stream=True, timeout=30) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
        for chunk in response.iter_content(chunk_size=None):
            seen += chunk
            if first is None and b"data:" in seen:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
    if first is None or b"[DONE]" not in seen:
        raise RuntimeError(f"{url}: stream without a data: event or [DONE]")
    return first, total


def _interleaved(
    probe: Callable[..., Any], targets: dict[str, tuple[str, Any]], runs: int
) -> dict[str, list[Any]]:
    """`runs` probes of each (url, body), the order rotating every run so drift cancels; after
    WARMUP unmeasured ones. Each target has its own keep-alive session."""
    sessions = {name: requests.Session() for name in targets}
    names = list(targets)
    for _ in range(WARMUP):
        for name in names:
            probe(sessions[name], *targets[name])
    results: dict[str, list[Any]] = {name: [] for name in targets}
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(probe(sessions[name], *targets[name]))
    for session in sessions.values():
        session.close()
    return results


def _throughput(url: str) -> tuple[float, int]:
    """(requests per second, errors) with CLIENTS threads, each with its own session."""
    stop = threading.Event()
    done = [0] * CLIENTS
    errors = [0] * CLIENTS

    def client(index: int) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(url, json=BODY, timeout=30)
                response.content  # noqa: B018
                if response.status_code == 200:
                    done[index] += 1
                else:
                    errors[index] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(DURATION_S)
    stop.set()
    for thread in threads:
        thread.join(30)
    elapsed = time.perf_counter() - started
    return sum(done) / elapsed, sum(errors)


def _deploy(stack: Any, folder: Path) -> dict[str, Any]:
    from modeldrop.adapters.gcs_folder import default_client
    from modeldrop.local.uploader import upload_folder

    config = stack.config
    upload_folder(default_client(), folder, config.bucket, f"{config.root_prefix}{MODEL}")
    deadline = time.monotonic() + 120
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = requests.get(f"{stack.urls['api']}/v1/models/{MODEL}", timeout=10)
        body = response.json()
        if response.ok and body["state"] in ("DEPLOYED", "REJECTED", "FAILED"):
            break
        time.sleep(0.2)
    if body.get("state") != "DEPLOYED":
        raise RuntimeError(f"{MODEL} did not reach DEPLOYED: {body}")
    return body


def run() -> dict:
    from modeldrop.local.emulators import missing_emulators
    from modeldrop.local.stack import LocalStack, StackConfig
    from modeldrop.local.tiny_model import build_tiny_model

    if reason := missing_emulators():
        print(f"   SKIPPED: {reason}")
        return {"skipped": reason, "targets": {}}
    work = Path(tempfile.mkdtemp(prefix="modeldrop-bench-api-"))
    try:
        folder = build_tiny_model(work / "tiny", "llama")
        config = StackConfig(engine="echo", state_dir=work / "state")
        with (
            LocalStack(config) as stack,
            mock.patch.dict(os.environ, {"REQUESTS_CA_BUNDLE": str(stack.vertex_ca)}),
        ):
            status = _deploy(stack, folder)
            urls = {
                "direct": f"https://{status['endpoint_dns']}/v1beta1/{status['endpoint']}"
                "/chat/completions",
                "api": f"{stack.urls['api']}/v1/deployments/{status['id']}/chat/completions",
            }
            unary = _interleaved(
                _unary,
                {  # the OpenAI-compatible route (model = model name) for comparison
                    **{name: (url, BODY) for name, url in urls.items()},
                    "openai": (
                        f"{stack.urls['api']}/v1/chat/completions",
                        {**BODY, "model": MODEL},
                    ),
                },
                UNARY_RUNS,
            )
            streams = _interleaved(
                _first_chunk, {name: (url, STREAM_BODY) for name, url in urls.items()}, STREAM_RUNS
            )
            rps = {name: _throughput(url) for name, url in urls.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = {n: _ms(statistics.median(v)) for n, v in unary.items()}
    p99 = {n: _ms(_p99(v)) for n, v in unary.items()}
    first = {n: _ms(statistics.median(f for f, _ in v)) for n, v in streams.items()}
    first_p99 = {n: _ms(_p99([f for f, _ in v])) for n, v in streams.items()}
    whole = {n: _ms(statistics.median(t for _, t in v)) for n, v in streams.items()}
    overhead = median["api"] - median["direct"]
    overhead_p99 = p99["api"] - p99["direct"]
    first_delta = first["api"] - first["direct"]

    print(f"   {'ms':36}{'direct':>9}{'api':>9}{'api-direct':>12}{'openai route':>14}")
    rows = [
        (f"unary median ({UNARY_RUNS} each)", median),
        ("unary p99", p99),
        (f"stream first chunk median ({STREAM_RUNS})", first),
        ("stream first chunk p99", first_p99),
        ("stream whole median", whole),
    ]
    for label, values in rows:
        delta = values["api"] - values["direct"]
        openai = f"{values['openai']:14.2f}" if "openai" in values else f"{'-':>14}"
        print(f"   {label:36}{values['direct']:9.2f}{values['api']:9.2f}{delta:+12.2f}{openai}")
    ratio = rps["api"][0] / rps["direct"][0]
    print(
        f"   {f'req/s, {CLIENTS} clients x {DURATION_S:g} s':36}"
        f"{rps['direct'][0]:9.0f}{rps['api'][0]:9.0f}{ratio:12.0%}"
        f"   (errors: direct {rps['direct'][1]}, api {rps['api'][1]})"
    )
    return {
        "unary_runs": UNARY_RUNS,
        "unary_median_ms": median,
        "unary_p99_ms": p99,
        "overhead_median_ms": overhead,
        "overhead_p99_ms": overhead_p99,
        "openai_overhead_median_ms": median["openai"] - median["direct"],
        "stream_runs": STREAM_RUNS,
        "first_chunk_median_ms": first,
        "first_chunk_p99_ms": first_p99,
        "first_chunk_delta_ms": first_delta,
        "stream_whole_median_ms": whole,
        "clients": CLIENTS,
        "duration_s": DURATION_S,
        "requests_per_second": {n: r for n, (r, _) in rps.items()},
        "throughput_errors": {n: e for n, (_, e) in rps.items()},
        "targets": {
            "proxy overhead median <= 2 ms": overhead <= 2.0,
            "first chunk within 5 ms of direct": first_delta <= 5.0,
        },
    }
