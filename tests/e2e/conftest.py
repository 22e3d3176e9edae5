"""The whole local stack, once per session; skips loudly where its parts are missing."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from modeldrop.local.emulators import missing_emulators
from modeldrop.local.subscriber import EventSubscriber
from tests.fixtures.local_stack import upload, vertex, wait_state
from tests.fixtures.model_folders import write_valid


def _missing() -> str | None:
    reasons = []
    if reason := missing_emulators():
        reasons.append(f"EMULATORS MISSING: {reason}")
    if (
        importlib.util.find_spec("torch") is None
        or importlib.util.find_spec("transformers") is None
    ):
        reasons.append(
            "SERVING ENGINE MISSING: install the local-serving extra (torch, transformers)"
        )
    return "; ".join(reasons) or None


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Any]:
    if reason := _missing():
        pytest.skip(reason)
    from modeldrop.local.stack import LocalStack, StackConfig

    state_dir = Path(tmp_path_factory.mktemp("stack"))
    with LocalStack(StackConfig(state_dir=state_dir, tick_seconds=1.0, lease_seconds=20)) as s:
        s.events = EventSubscriber(s.config.project, s.config.events_topic, "e2e-events")
        try:
            yield s
        finally:
            s.events.close()


# The capacity stack starts with no L4 quota in us-central1 and one L4 in stock in europe-west4;
# tests replace the table (POST /emulator/capacity) with the one they need.
CAPACITY = {"us-central1": {"NVIDIA_L4": {"quota": 0}}, "europe-west4": {"NVIDIA_L4": {"stock": 1}}}


@pytest.fixture(scope="session")
def capacity_stack(tmp_path_factory) -> Iterator[Any]:
    """A second stack on the echo engine (no torch needed), started as `modeldrop up
    --vertex-capacity FILE` with MODELDROP_REGIONS=us-central1,europe-west4 and two MODELDROP_*
    variables the stack's own settings override. `started_with_capacity` is the emulator's
    table right after the start."""
    if reason := missing_emulators():
        pytest.skip(f"EMULATORS MISSING: {reason}")
    from modeldrop.local.stack import LocalStack, StackConfig

    state_dir = Path(tmp_path_factory.mktemp("capacity"))
    capacity = state_dir / "capacity.json"
    capacity.write_text(json.dumps(CAPACITY))
    config = StackConfig(
        state_dir=state_dir,
        engine="echo",
        vertex_capacity=capacity,
        tick_seconds=1.0,
        lease_seconds=15,
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELDROP_REGIONS", "us-central1,europe-west4")
        env.setenv("MODELDROP_VERTEX_API_ENDPOINT", "https://us-central1-aiplatform.googleapis.com")
        env.setenv("MODELDROP_BASE_POLICY", "strict")
        with LocalStack(config) as s:
            url = f"{s.urls['vertex']}/emulator/capacity"
            s.started_with_capacity = requests.get(url, timeout=10).json()["capacity"]
            yield s


RETIRE_AFTER_SECONDS = 15  # the revisions stack's grace: long enough for a rollback
MAX_HOURLY_USD = "1.00"  # room for one g2-standard-4 with an L4 ($0.81/h), not for two


@pytest.fixture(scope="module")
def revisions_stack(tmp_path_factory) -> Iterator[Any]:
    """A stack on the echo engine for revisions and cost: `modeldrop up` with
    MODELDROP_RETIRE_AFTER_SECONDS and MODELDROP_MAX_HOURLY_USD set."""
    if reason := missing_emulators():
        pytest.skip(f"EMULATORS MISSING: {reason}")
    from modeldrop.local.stack import LocalStack, StackConfig

    state_dir = Path(tmp_path_factory.mktemp("revisions"))
    config = StackConfig(state_dir=state_dir, engine="echo", tick_seconds=1.0, lease_seconds=15)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELDROP_RETIRE_AFTER_SECONDS", str(RETIRE_AFTER_SECONDS))
        env.setenv("MODELDROP_MAX_HOURLY_USD", MAX_HOURLY_USD)
        with LocalStack(config) as s:
            yield s


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory) -> Iterator[Any]:
    """A stack on the echo engine with the operator's PSC network and subnetwork set
    (MODELDROP_PSC_NETWORK, MODELDROP_PSC_SUBNETWORK): private folders deploy and connect."""
    if reason := missing_emulators():
        pytest.skip(f"EMULATORS MISSING: {reason}")
    from modeldrop.local.stack import LocalStack, StackConfig

    network = {
        "MODELDROP_PSC_NETWORK": "modeldrop-vpc",
        "MODELDROP_PSC_SUBNETWORK": "modeldrop-psc",
    }
    config = StackConfig(
        state_dir=Path(tmp_path_factory.mktemp("private")),
        engine="echo",
        tick_seconds=1.0,
        lease_seconds=15,
        extra_env=network,  # the functions' only: other stacks started meanwhile stay public
    )
    with LocalStack(config) as s:
        yield s


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from modeldrop.local.tiny_model import build_tiny_model

    return build_tiny_model(Path(tmp_path_factory.mktemp("tiny")) / "llama", "llama")


@pytest.fixture
def placing(capacity_stack, tmp_path):
    """`place(name, modeldrop_yaml, capacity_table, faults)` uploads a valid folder to the
    capacity stack with that table and those emulator faults, and returns when the upload
    ended (time.monotonic). Afterwards the faults are cleared and what deployed is deleted."""
    names: list[str] = []

    def place(name: str, yaml: str, table: dict, faults: list[dict] = ()) -> float:
        vertex(capacity_stack, "DELETE", "/emulator/faults")
        vertex(capacity_stack, "POST", "/emulator/capacity", table)
        for fault in faults:
            vertex(capacity_stack, "POST", "/emulator/faults", fault)
        folder = write_valid(tmp_path / name)
        (folder / "modeldrop.yaml").write_text(yaml)
        names.append(name)
        started = time.monotonic()
        upload(capacity_stack, folder, name)
        return started

    yield place
    vertex(capacity_stack, "DELETE", "/emulator/faults")
    for name in names:
        body = requests.get(f"{capacity_stack.urls['api']}/v1/models/{name}", timeout=10).json()
        if body.get("state") == "DEPLOYED":
            requests.delete(body["links"]["self"], timeout=30)
            wait_state(capacity_stack, name, {"UNDEPLOYED"}, timeout=60)
