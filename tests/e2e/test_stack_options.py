"""`modeldrop up` options on the live stack: the Vertex emulator's capacity table, and the
MODELDROP_* variables of its environment passed on to the functions (the stack's own win)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CAPACITY


def test_the_emulator_has_the_table_and_the_functions_the_variables(capacity_stack) -> None:
    assert capacity_stack.started_with_capacity == CAPACITY
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the functions' environment from /proc")
    for name in ("validate", "deploy", "reconcile", "api"):
        pid = capacity_stack.processes[name]._proc.pid
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env["MODELDROP_REGIONS"] == "us-central1,europe-west4"
        assert env["MODELDROP_VERTEX_API_ENDPOINT"] == capacity_stack.urls["vertex"]
        assert env["MODELDROP_BASE_POLICY"] == "family"  # the stack's --policy wins
