"""The hand-off from validate to deploy: one Pub/Sub message per validated deployment."""

from __future__ import annotations

import json
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1

from modeldrop.adapters.pubsub_events import PUBLISH_TIMEOUT, message_parts
from modeldrop.api.keys import valid_id
from modeldrop.domain.findings import excerpt

# {"deployment_id": ID} with an id of at most 1,024 bytes, escaped: anything longer is not ours,
# and is refused before it is parsed (a deeply nested document recurses in the JSON parser)
MAX_MESSAGE_BYTES = 8 * 1024


class PubSubWorkQueue:
    """The WorkQueue port on a Pub/Sub topic.

    Each message: data {"deployment_id": ID} (JSON) and the attribute deployment_id=ID.
    """

    def __init__(
        self,
        publisher: pubsub_v1.PublisherClient,
        project: str,
        topic: str,
        timeout: float = PUBLISH_TIMEOUT,
    ) -> None:
        self._publisher = publisher
        self._topic = publisher.topic_path(project, topic)
        self.timeout = timeout

    def publish_validated(self, deployment_id: str) -> None:
        """Queue a validated deployment; waits for the server, so a failed publish raises."""
        data = json.dumps({"deployment_id": deployment_id}).encode()
        future = self._publisher.publish(self._topic, data, deployment_id=deployment_id)
        future.result(timeout=self.timeout)


def read_validated(message: Any) -> str:
    """The deployment id a work-queue message carries (any message shape `message_parts` takes).

    Raises ValueError when the message names none.
    """
    _, data = message_parts(message)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"not a work-queue message: {len(data)} bytes: {excerpt(data)}")
    try:
        deployment_id = json.loads(data)["deployment_id"]
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ValueError(f"not a work-queue message: {excerpt(data)}") from exc
    if not valid_id(deployment_id):
        raise ValueError(f"not a deployment id: {excerpt(deployment_id)}")
    return deployment_id
