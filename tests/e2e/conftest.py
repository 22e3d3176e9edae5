"""The whole local stack, once per session; skips loudly where its parts are missing."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modeldrop.local.emulators import missing_emulators


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


class Events:
    """Every notification on the events topic, collected by a streaming pull subscriber."""

    def __init__(self, project: str, topic: str) -> None:
        from google.cloud import pubsub_v1

        from modeldrop.adapters.pubsub_admin import ensure_subscription

        self.client = pubsub_v1.SubscriberClient()
        path = ensure_subscription(self.client, project, "e2e-events", topic)
        self.messages: list[Any] = []
        self._changed = threading.Condition()
        self.future = self.client.subscribe(path, self._receive)

    def _receive(self, message: Any) -> None:
        message.ack()
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def for_deployment(self, deployment_id: str) -> list[Any]:
        return [m for m in self.messages if m.attributes.get("deployment_id") == deployment_id]

    def wait_for(self, predicate, timeout: float = 180) -> list[Any]:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.messages), timeout):
                raise TimeoutError(f"events so far: {[dict(m.attributes) for m in self.messages]}")
        return self.messages

    def close(self) -> None:
        self.future.cancel()
        self.client.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Any]:
    if reason := _missing():
        pytest.skip(reason)
    from modeldrop.local.stack import LocalStack, StackConfig

    state_dir = Path(tmp_path_factory.mktemp("stack"))
    with LocalStack(StackConfig(state_dir=state_dir, tick_seconds=1.0, lease_seconds=20)) as s:
        s.events = Events(s.config.project, s.config.events_topic)
        try:
            yield s
        finally:
            s.events.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from modeldrop.local.tiny_model import build_tiny_model

    return build_tiny_model(Path(tmp_path_factory.mktemp("tiny")) / "llama", "llama")
