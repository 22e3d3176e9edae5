"""The whole local stack, once per session; skips loudly where its parts are missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modeldrop.local.emulators import missing_emulators
from modeldrop.local.subscriber import EventSubscriber


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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from modeldrop.local.tiny_model import build_tiny_model

    return build_tiny_model(Path(tmp_path_factory.mktemp("tiny")) / "llama", "llama")
