"""`modeldrop up` options on the live stack: the Vertex emulator's capacity table, and the
MODELDROP_* variables of its environment passed on to the functions (the stack's own win)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from modeldrop.local.emulators import missing_emulators
from modeldrop.local.stack import LocalStack, StackConfig

TABLE = {"us-central1": {"NVIDIA_L4": {"quota": 0}}, "europe-west4": {"NVIDIA_L4": {"stock": 1}}}


@pytest.fixture(scope="module")
def options_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if reason := missing_emulators():
        pytest.skip(f"EMULATORS MISSING: {reason}")
    state_dir = Path(tmp_path_factory.mktemp("options"))
    capacity = state_dir / "capacity.json"
    capacity.write_text(json.dumps(TABLE))
    config = StackConfig(state_dir=state_dir, engine="echo", vertex_capacity=capacity)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELDROP_REGIONS", "us-central1,europe-west4")
        env.setenv("MODELDROP_VERTEX_API_ENDPOINT", "https://us-central1-aiplatform.googleapis.com")
        env.setenv("MODELDROP_BASE_POLICY", "strict")
        with LocalStack(config) as stack:
            yield stack


def test_the_emulator_has_the_table_and_the_functions_the_variables(
    options_stack: LocalStack,
) -> None:
    body = requests.get(f"{options_stack.urls['vertex']}/emulator/capacity", timeout=10).json()
    assert body["capacity"] == TABLE
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the functions' environment from /proc")
    for name in ("validate", "deploy", "reconcile", "api"):
        pid = options_stack.processes[name]._proc.pid
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env["MODELDROP_REGIONS"] == "us-central1,europe-west4"
        assert env["MODELDROP_VERTEX_API_ENDPOINT"] == options_stack.urls["vertex"]
        assert env["MODELDROP_BASE_POLICY"] == "family"  # the stack's --policy wins
