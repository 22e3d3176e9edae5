"""Deployment state changes as CloudEvents on Pub/Sub, in binary content mode.

Each event is one message: the CloudEvent attributes are `ce-*` message attributes
(`ce-specversion`, `ce-type`, `ce-source`, `ce-id`, `ce-subject`, `ce-time`) plus `content-type`,
and the data is the JSON snapshot of the record. Plain attributes `state`, `model` and
`deployment_id` let subscriptions filter, e.g. `attributes.state = "DEPLOYED"`.

`ce-id` is "<deployment id>-<event_sequence>": a redelivered or republished event keeps its id,
so subscribers can drop duplicates.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent, from_http

from modeldrop.domain.deployment import Deployment, State, snapshot
from modeldrop.domain.findings import excerpt

TYPE_PREFIX = "dev.modeldrop.deployment."
PUBLISH_TIMEOUT = 30.0  # seconds to wait for the server's acknowledgement of one publish


def event_type(state: State | str) -> str:
    """The CloudEvent type of a state, e.g. dev.modeldrop.deployment.deployed."""
    return TYPE_PREFIX + str(state).lower()


def blocked(deployment: Deployment) -> bool:
    """Whether the record's news is that the budget cap holds its deploy back."""
    return deployment.state is State.VALIDATED and deployment.blocked is not None


def default_source(project: str) -> str:
    """The CloudEvent source of a project's events: //modeldrop/projects/PROJECT."""
    return f"//modeldrop/projects/{project}"


def to_event(deployment: Deployment, source: str) -> CloudEvent:
    """The CloudEvent announcing the record's current state."""
    at = deployment.updated_at
    attributes = {
        "type": event_type("BLOCKED" if blocked(deployment) else deployment.state),
        "source": source,
        "id": f"{deployment.id}-{deployment.event_sequence}",
        "subject": deployment.id,
        "time": (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat(),
        "datacontenttype": "application/json",
    }
    return CloudEvent(attributes, snapshot(deployment))


def message_parts(message: Any) -> tuple[dict[str, str], bytes]:
    """(attributes, data) of a Pub/Sub message.

    `message` is a pulled message (`.attributes`, `.data` bytes: a streaming-pull Message or a
    PubsubMessage), or the `message` map of a push envelope or of a Pub/Sub-triggered
    function's CloudEvent (`attributes`, `data` in base64). Raises ValueError for anything else.
    """
    if isinstance(message, Mapping):
        attributes, data = message.get("attributes") or {}, message.get("data") or ""
        if isinstance(attributes, Mapping) and isinstance(data, str):
            return {str(k): str(v) for k, v in attributes.items()}, base64.b64decode(data)
    elif hasattr(message, "attributes") and isinstance(getattr(message, "data", None), bytes):
        return dict(message.attributes), bytes(message.data)
    raise ValueError(f"not a Pub/Sub message: {excerpt(message)}")


def parse_event(message: Any) -> CloudEvent:
    """The CloudEvent carried by a binary-mode Pub/Sub message (see `message_parts`).

    Raises a cloudevents.exceptions.GenericException subclass when it carries none, and
    ValueError when `message` is no Pub/Sub message.
    """
    attributes, data = message_parts(message)
    return from_http(attributes, data)


class CloudEventPublisher:
    """The EventPublisher port on a Pub/Sub topic."""

    def __init__(
        self,
        publisher: pubsub_v1.PublisherClient,
        project: str,
        topic: str,
        source: str | None = None,
        timeout: float = PUBLISH_TIMEOUT,
    ) -> None:
        self._publisher = publisher
        self._topic = publisher.topic_path(project, topic)
        self.source = source or default_source(project)
        self.timeout = timeout

    def publish(self, deployment: Deployment) -> str:
        """Publish the event of the record's current state; returns the event id.

        Waits for the server (at most `timeout` s), so a failed publish raises.
        """
        event = to_event(deployment, self.source)
        headers, body = to_binary(event)
        attributes = {
            **headers,
            "state": str(deployment.state),
            "model": deployment.model,
            "deployment_id": deployment.id,
        }
        self._publisher.publish(self._topic, body, **attributes).result(timeout=self.timeout)
        return event["id"]
