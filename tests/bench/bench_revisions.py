"""A new revision taking a model name over under load: what clients of the name see.

The local stack with the echo engine; v1 of a model DEPLOYED; 4 clients send chat completions
to the name (POST /v1/chat/completions, model = name) without pause while v2 is uploaded,
deployed, takes the name over and v1 is retired. Measured: requests, failures, how long after
v2's DEPLOYED transition the first answer came from v2 (X-Modeldrop-Deployment), the last one
from v1, and when v1 was retired. Once with a grace (MODELDROP_RETIRE_AFTER_SECONDS=3), once
with none (0, the local default: v1's endpoint goes at once, under requests still in flight).
Target: no failed request with a grace.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import requests

from tests.fixtures.local_stack import upload

MODEL = "bench-revisions"
CLIENTS = 4
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _state(stack: Any, path: str) -> dict[str, Any]:
    return requests.get(f"{stack.urls['api']}{path}", timeout=10).json()


def _wait(stack: Any, path: str, done: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = _state(stack, path)
        if done(body):
            return body
        time.sleep(0.2)
    raise RuntimeError(f"{path} did not settle: {body.get('state')}")


def _at(body: dict[str, Any], state: str) -> float:
    """The epoch seconds of the record's last transition to `state`."""
    times = [t["at"] for t in body["history"] if t["state"] == state]
    return datetime.fromisoformat(times[-1]).timestamp()


def _handover(grace: str, work: Path, folder: Path) -> dict[str, Any]:
    from modeldrop.local.stack import LocalStack, StackConfig

    config = StackConfig(engine="echo", state_dir=work / f"state-{grace}", tick_seconds=1.0)
    with (
        mock.patch.dict(os.environ, {"MODELDROP_RETIRE_AFTER_SECONDS": grace}),
        LocalStack(config) as stack,
    ):
        upload(stack, folder, MODEL)
        v1 = _wait(stack, f"/v1/models/{MODEL}", lambda b: b.get("state") == "DEPLOYED")
        seen: list[tuple[float, int, str]] = []  # (epoch seconds, status, deployment)
        stop = threading.Event()

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    response = session.post(
                        f"{stack.urls['api']}/v1/chat/completions", json=BODY, timeout=30
                    )
                    answered = response.headers.get("X-Modeldrop-Deployment", "")
                    seen.append((time.time(), response.status_code, answered))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        upload(stack, folder, MODEL, order=["config.json"])  # a new generation: v2
        v2 = _wait(
            stack,
            f"/v1/models/{MODEL}",
            lambda b: b.get("id") != v1["id"] and b.get("state") in ("DEPLOYED", "FAILED"),
        )
        retired = _wait(
            stack, f"/v1/deployments/{v1['id']}", lambda b: b.get("state") == "UNDEPLOYED", 60
        )
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(30)
    deployed_at = _at(v2, "DEPLOYED")
    failures = [status for _, status, _ in seen if status != 200]
    from_v2 = [t for t, status, who in seen if status == 200 and who == v2["id"]]
    from_v1 = [t for t, status, who in seen if status == 200 and who == v1["id"]]
    return {
        "grace_seconds": int(grace),
        "requests": len(seen),
        "failed": len(failures),
        "failed_statuses": sorted(set(failures)),
        "first_v2_after_deployed_s": round(min(from_v2) - deployed_at, 3) if from_v2 else None,
        "last_v1_after_deployed_s": round(max(from_v1) - deployed_at, 3) if from_v1 else None,
        "v1_retired_after_s": round(_at(retired, "UNDEPLOYED") - deployed_at, 3),
    }


def run() -> dict:
    from modeldrop.local.emulators import missing_emulators
    from modeldrop.local.tiny_model import build_tiny_model

    if reason := missing_emulators():
        print(f"   SKIPPED: {reason}")
        return {"skipped": reason, "targets": {}}
    work = Path(tempfile.mkdtemp(prefix="modeldrop-bench-revisions-"))
    try:
        folder = build_tiny_model(work / "tiny", "llama")
        results = [_handover(grace, work, folder) for grace in ("3", "0")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        print(
            f"   grace {r['grace_seconds']} s: {r['requests']} requests, {r['failed']} failed "
            f"{r['failed_statuses']}; first answer from v2 {r['first_v2_after_deployed_s']} s "
            f"after its DEPLOYED, last from v1 {r['last_v1_after_deployed_s']} s, v1 retired "
            f"after {r['v1_retired_after_s']} s"
        )
    with_grace = results[0]
    return {
        "handovers": results,
        "targets": {"no failed request during a handover with a grace": with_grace["failed"] == 0},
    }
