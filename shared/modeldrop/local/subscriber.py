"""A subscriber to modeldrop's notifications: collects every message on the events topic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class EventSubscriber:
    """A streaming-pull subscription on the events topic; `on_message` sees each one as it comes."""

    def __init__(
        self,
        project: str,
        topic: str,
        subscription: str = "modeldrop-local-subscriber",
        on_message: Callable[[Any], None] | None = None,
    ) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        from modeldrop.adapters.pubsub_admin import ensure_subscription

        self.client = pubsub_v1.SubscriberClient()
        path = ensure_subscription(self.client, project, subscription, topic)
        self.messages: list[Any] = []
        self.on_message = on_message
        self._changed = threading.Condition()
        self.future = self.client.subscribe(path, self._receive)

    def _receive(self, message: Any) -> None:
        message.ack()
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        if self.on_message:
            self.on_message(message)

    def for_deployment(self, deployment_id: str) -> list[Any]:
        return [m for m in self.messages if m.attributes.get("deployment_id") == deployment_id]

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 180) -> list[Any]:
        """Block until `predicate(messages)` holds; TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.messages), timeout):
                seen = [dict(m.attributes) for m in self.messages]
                raise TimeoutError(f"notifications so far: {seen}")
        return self.messages

    def close(self) -> None:
        self.future.cancel()
        self.client.close()
