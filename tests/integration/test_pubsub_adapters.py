"""CloudEventPublisher, PubSubWorkQueue and the admin helpers on the Pub/Sub emulator."""

from __future__ import annotations

import base64
import json
import queue
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from cloudevents.exceptions import GenericException
from google.api_core.exceptions import NotFound
from google.cloud import pubsub_v1

from modeldrop.adapters.pubsub_admin import ensure_subscription, ensure_topic
from modeldrop.adapters.pubsub_events import (
    CloudEventPublisher,
    event_type,
    parse_event,
)
from modeldrop.adapters.pubsub_queue import PubSubWorkQueue, read_validated
from modeldrop.domain.deployment import Deployment, State, advance, new_deployment, snapshot
from modeldrop.local.emulators import free_port
from tests.fixtures.poison_events import DEEP
from tests.fixtures.pubsub import pull

T0 = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def subscriber(pubsub_emulator) -> Iterator[pubsub_v1.SubscriberClient]:
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


@pytest.fixture
def names() -> str:
    """A prefix unique to the test for topic and subscription names."""
    return f"t{uuid.uuid4().hex[:12]}"


def deployment_in(state: State, name: str = "llama-ft") -> Deployment:
    """A record that went through the states leading to `state`."""
    path = {
        State.VALIDATING: [State.VALIDATING],
        State.REJECTED: [State.VALIDATING, State.REJECTED],
        State.VALIDATED: [State.VALIDATING, State.VALIDATED],
        State.DEPLOYED: [State.VALIDATING, State.VALIDATED, State.DEPLOYING, State.DEPLOYED],
        State.FAILED: [State.VALIDATING, State.VALIDATED, State.DEPLOYING, State.FAILED],
    }[state]
    d = new_deployment("bucket-1", f"models/{name}", uuid.uuid4().hex, 1, T0)
    for i, step in enumerate(path, 1):
        d = advance(d, step, T0 + timedelta(seconds=i, microseconds=i), f"to {step}")
    return d


@pytest.fixture
def events_topic(pubsub_emulator, names: str) -> str:
    ensure_topic(pubsub_emulator.client, pubsub_emulator.project, f"{names}-events")
    return f"{names}-events"


def test_event_type() -> None:
    assert event_type(State.DEPLOYED) == "dev.modeldrop.deployment.deployed"
    assert event_type("UNDEPLOYING") == "dev.modeldrop.deployment.undeploying"


def test_one_binary_mode_cloudevent_per_publish(
    pubsub_emulator, subscriber, events_topic: str, names: str
) -> None:
    project = pubsub_emulator.project
    subscription = ensure_subscription(subscriber, project, f"{names}-all", events_topic)
    publisher = CloudEventPublisher(pubsub_emulator.client, project, events_topic)
    deployments = [deployment_in(s) for s in (State.VALIDATING, State.REJECTED, State.DEPLOYED)]

    event_ids = [publisher.publish(d) for d in deployments]

    assert event_ids == [f"{d.id}-{d.event_sequence}" for d in deployments]
    messages = pull(subscriber, subscription, expected=3)
    assert len(messages) == 3
    by_id = {m.attributes["ce-id"]: m for m in messages}
    assert set(by_id) == set(event_ids)
    for d, event_id in zip(deployments, event_ids, strict=True):
        message = by_id[event_id]
        assert dict(message.attributes) == {
            "ce-specversion": "1.0",
            "ce-type": f"dev.modeldrop.deployment.{d.state.lower()}",
            "ce-source": f"//modeldrop/projects/{project}",
            "ce-id": event_id,
            "ce-subject": d.id,
            "ce-time": d.updated_at.isoformat(),
            "content-type": "application/json",
            "state": str(d.state),
            "model": "llama-ft",
            "deployment_id": d.id,
        }
        assert json.loads(message.data) == snapshot(d)

        event = parse_event(message)
        assert event["specversion"] == "1.0"
        assert event["type"] == event_type(d.state)
        assert event["source"] == publisher.source
        assert (event["id"], event["subject"]) == (event_id, d.id)
        assert datetime.fromisoformat(event["time"]) == d.updated_at
        assert event["datacontenttype"] == "application/json"
        assert event.data == snapshot(d)
        assert "state" not in event.get_attributes()  # plain attributes are not ce- ones


def test_republished_event_keeps_its_id(
    pubsub_emulator, subscriber, events_topic: str, names: str
) -> None:
    project = pubsub_emulator.project
    subscription = ensure_subscription(subscriber, project, f"{names}-dup", events_topic)
    publisher = CloudEventPublisher(pubsub_emulator.client, project, events_topic, "//test")
    d = deployment_in(State.DEPLOYED)

    assert publisher.publish(d) == publisher.publish(d)

    messages = pull(subscriber, subscription, expected=2)
    assert [m.attributes["ce-id"] for m in messages] == [f"{d.id}-{d.event_sequence}"] * 2
    assert {m.attributes["ce-source"] for m in messages} == {"//test"}


def test_filtered_subscription_gets_only_deployed_events(
    pubsub_emulator, subscriber, events_topic: str, names: str
) -> None:
    project = pubsub_emulator.project
    only_deployed = 'attributes.state = "DEPLOYED"'
    subscription = ensure_subscription(
        subscriber, project, f"{names}-deployed", events_topic, filter=only_deployed
    )
    assert subscriber.get_subscription(subscription=subscription).filter == only_deployed
    publisher = CloudEventPublisher(pubsub_emulator.client, project, events_topic)
    deployments = [deployment_in(s) for s in (State.REJECTED, State.DEPLOYED, State.FAILED)]
    deployments.append(deployment_in(State.DEPLOYED, "other"))
    for d in deployments:
        publisher.publish(d)

    messages = pull(subscriber, subscription, expected=2, quiet_s=1.0)

    states = sorted(m.attributes["state"] for m in messages)
    if states == ["DEPLOYED", "DEPLOYED", "FAILED", "REJECTED"]:
        pytest.skip(
            "PUB/SUB EMULATOR DOES NOT APPLY SUBSCRIPTION FILTERS: it stores the filter but "
            "delivers every message (filtering reportedly arrived with Google Cloud SDK 555)"
        )
    assert states == ["DEPLOYED", "DEPLOYED"]
    assert {parse_event(m)["subject"] for m in messages} == {
        d.id for d in deployments if d.state is State.DEPLOYED
    }


def test_work_queue_round_trip(pubsub_emulator, subscriber, names: str) -> None:
    project = pubsub_emulator.project
    ensure_topic(pubsub_emulator.client, project, f"{names}-validated")
    subscription = ensure_subscription(subscriber, project, f"{names}-deploy", f"{names}-validated")
    work = PubSubWorkQueue(pubsub_emulator.client, project, f"{names}-validated")

    work.publish_validated("llama-ft-0123456789ab")

    [message] = pull(subscriber, subscription, expected=1)
    assert json.loads(message.data) == {"deployment_id": "llama-ft-0123456789ab"}
    assert dict(message.attributes) == {"deployment_id": "llama-ft-0123456789ab"}
    assert read_validated(message) == "llama-ft-0123456789ab"


def test_readers_take_push_envelope_messages() -> None:
    envelope_message = {
        "attributes": {"deployment_id": "x-1"},
        "data": base64.b64encode(b'{"deployment_id": "x-1"}').decode(),
        "messageId": "1",
    }
    assert read_validated(envelope_message) == "x-1"
    with pytest.raises(ValueError, match="work-queue"):
        read_validated({"data": base64.b64encode(b"[]").decode()})
    with pytest.raises(GenericException):
        parse_event(envelope_message)  # no ce- attributes: not a CloudEvent


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


NOT_WORK = {
    "not-a-message": [1],
    "data-number": {"data": 5},
    "attributes-list": {"data": _b64(b'{"deployment_id": "x"}'), "attributes": [1]},
    "not-base64": {"data": "%%%"},
    "deep": {"data": _b64(DEEP.encode())},
    "id-list": {"data": _b64(b'{"deployment_id": ["x"]}')},
    "id-slash": {"data": _b64(b'{"deployment_id": "a/b"}')},
    "id-huge": {"data": _b64(json.dumps({"deployment_id": "x" * 2_000_000}).encode())},
}


@pytest.mark.parametrize("message", NOT_WORK.values(), ids=NOT_WORK)
def test_what_names_no_deployment_is_a_short_value_error(message) -> None:
    with pytest.raises(ValueError) as caught:
        read_validated(message)
    assert len(str(caught.value)) < 300


def test_publish_to_a_missing_topic_raises(pubsub_emulator, names: str) -> None:
    publisher = CloudEventPublisher(pubsub_emulator.client, pubsub_emulator.project, f"{names}-x")
    with pytest.raises(NotFound):
        publisher.publish(deployment_in(State.DEPLOYED))


def test_admin_helpers_are_idempotent(pubsub_emulator, subscriber, names: str) -> None:
    project, publisher = pubsub_emulator.project, pubsub_emulator.client
    for _ in range(2):
        topic = ensure_topic(publisher, project, f"{names}-work")
        dead = ensure_topic(publisher, project, f"{names}-dead")
        subscription = ensure_subscription(
            subscriber,
            project,
            f"{names}-sub",
            f"{names}-work",
            ack_deadline_s=30,
            dead_letter_topic=f"{names}-dead",
            max_delivery_attempts=7,
            min_backoff_s=0.5,
            max_backoff_s=2,
        )

    assert topic == f"projects/{project}/topics/{names}-work"
    created = subscriber.get_subscription(subscription=subscription)
    assert created.topic == topic
    assert created.ack_deadline_seconds == 30
    assert created.dead_letter_policy.dead_letter_topic == dead
    assert created.dead_letter_policy.max_delivery_attempts == 7
    assert created.retry_policy.minimum_backoff.total_seconds() == 0.5
    assert created.retry_policy.maximum_backoff.total_seconds() == 2
    assert not created.push_config.push_endpoint


def test_dead_letter_topic_receives_undeliverable_messages(
    pubsub_emulator, subscriber, names: str
) -> None:
    project = pubsub_emulator.project
    ensure_topic(pubsub_emulator.client, project, f"{names}-work")
    ensure_topic(pubsub_emulator.client, project, f"{names}-dead")
    subscription = ensure_subscription(
        subscriber,
        project,
        f"{names}-sub",
        f"{names}-work",
        dead_letter_topic=f"{names}-dead",
        max_delivery_attempts=5,
    )
    dead = ensure_subscription(subscriber, project, f"{names}-dead-sub", f"{names}-dead")
    PubSubWorkQueue(pubsub_emulator.client, project, f"{names}-work").publish_validated("d-1")

    attempts: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # nack every delivery until none comes
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=2)
        if not response.received_messages and attempts:
            break  # the emulator dead-letters on this pull, after the last failed attempt
        for m in response.received_messages:
            attempts.append(m.delivery_attempt)
            subscriber.modify_ack_deadline(
                subscription=subscription, ack_ids=[m.ack_id], ack_deadline_seconds=0
            )

    assert attempts == [1, 2, 3, 4, 5]
    [message] = pull(subscriber, dead, expected=1)
    assert read_validated(message) == "d-1"


class _PushReceiver(BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def push_endpoint() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    """A local HTTP server recording the JSON bodies POSTed to it."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = type("Receiver", (_PushReceiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/push", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_push_subscription_delivers_cloudevents(
    pubsub_emulator, subscriber, events_topic: str, names: str, push_endpoint
) -> None:
    url, received = push_endpoint
    project = pubsub_emulator.project
    subscription = ensure_subscription(
        subscriber, project, f"{names}-push", events_topic, push_endpoint=url
    )
    assert subscriber.get_subscription(subscription=subscription).push_config.push_endpoint == url
    d = deployment_in(State.DEPLOYED)

    CloudEventPublisher(pubsub_emulator.client, project, events_topic).publish(d)

    envelope = received.get(timeout=10)
    assert envelope["subscription"] == subscription
    event = parse_event(envelope["message"])
    assert event["type"] == "dev.modeldrop.deployment.deployed"
    assert event["id"] == f"{d.id}-{d.event_sequence}"
    assert event.data == snapshot(d)
    assert envelope["message"]["attributes"]["state"] == "DEPLOYED"
