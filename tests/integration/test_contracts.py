"""Contract tests: the same cases against the unit tests' fakes and the real adapters on the
emulators (store on Firestore, work queue and events on Pub/Sub, serving logs on the Vertex AI
emulator's Cloud Logging route), so the fakes cannot drift from what they stand in for."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import pubsub_v1

from modeldrop.adapters.firestore_store import FirestoreDeploymentStore
from modeldrop.adapters.pubsub_admin import ensure_subscription, ensure_topic
from modeldrop.adapters.pubsub_events import CloudEventPublisher
from modeldrop.adapters.pubsub_queue import PubSubWorkQueue, read_validated
from modeldrop.adapters.serving_logs import SEVERITIES, CloudServingLogs
from modeldrop.domain.deployment import Deployment, State, advance, new_deployment, update
from modeldrop.domain.revisions import ModelPointer
from modeldrop.errors import UsageError
from modeldrop.service.ports import LogEntry, RecordTooLarge
from modeldrop.settings import Settings
from tests.fixtures.page_tokens import FOREIGN_TOKENS
from tests.fixtures.pubsub import pull
from tests.fixtures.vertex import deploy_and_wait
from tests.unit.service.fakes import FakeEvents, FakeQueue, FakeServingLogs, FakeStore

T0 = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


# --- the deployment store ------------------------------------------------------------------


@pytest.fixture(params=["firestore", "fake"])
def store(request: pytest.FixtureRequest) -> Any:
    """The real store on the emulator, then the fake: every case runs against both."""
    if request.param == "fake":
        return FakeStore()
    emulator = request.getfixturevalue("firestore_emulator")
    return FirestoreDeploymentStore(emulator.client, f"contract-{uuid.uuid4().hex}")


def record(name: str = "llama-ft", revision: int = 1, at: datetime = T0) -> Deployment:
    return new_deployment("bucket-1", f"models/{name}", uuid.uuid4().hex, revision, at)


def stored(store: Any, deployment: Deployment) -> Deployment:
    assert store.create(deployment)
    found = store.get(deployment.id)
    assert found is not None and found.etag
    return found


def test_create_is_create_if_absent(store: Any) -> None:
    first = record()
    assert store.create(first)
    assert not store.create(advance(first, State.VALIDATING, T0))
    assert store.get(first.id).state is State.DETECTED


def test_unknown_and_unusable_ids_find_nothing(store: Any) -> None:
    for key in ("missing", "a/b", "..", "x" * 2000):
        assert store.get(key) is None
        assert store.latest_for_model(key) is None


def test_replace_is_update_if_unchanged(store: Any) -> None:
    read = stored(store, record())
    written = store.replace(advance(read, State.VALIDATING, T0))
    assert written is not None and written.etag not in (None, read.etag)
    assert store.replace(advance(read, State.SUPERSEDED, T0)) is None  # a stale etag
    assert store.get(read.id).state is State.VALIDATING


def test_a_models_pointer_is_created_once_and_replaced_only_if_unchanged(store: Any) -> None:
    name = f"model {uuid.uuid4().hex} / ünïcode .."  # any folder name; not a document id
    assert store.get_pointer(name) is None
    first = store.put_pointer(ModelPointer(name, "dep-1", None, T0))
    assert first is not None and first.etag and store.get_pointer(name) == first
    assert store.put_pointer(ModelPointer(name, "dep-9", None, T0)) is None  # exists already
    moved = store.put_pointer(replace(first, serving="dep-2", previous="dep-1", changed_at=T1))
    assert moved is not None and moved.etag != first.etag
    assert store.put_pointer(replace(first, serving="dep-3")) is None  # a stale etag
    found = store.get_pointer(name)
    assert (found.serving, found.previous, found.changed_at) == ("dep-2", "dep-1", T1)
    assert store.get_pointer("x" * 2000) is None


def test_replace_needs_an_etag(store: Any) -> None:
    d = record()
    store.create(d)
    with pytest.raises(ValueError, match="etag"):
        store.replace(d)


def test_a_record_over_the_document_limit_is_refused(store: Any) -> None:
    read = stored(store, record())
    with pytest.raises(RecordTooLarge):
        store.replace(update(read, T0, validation={"v": "x" * (2**20 + 10)}))
    assert store.get(read.id).validation == read.validation


def test_list_is_newest_first_filtered_and_paged(store: Any) -> None:
    made = [record(f"m{i % 2}", at=T0 + timedelta(seconds=i)) for i in range(5)]
    for d in made:
        store.create(d)
    store.replace(advance(store.get(made[1].id), State.SUPERSEDED, T0))
    ids: list[str] = []
    page, token = store.list_page(limit=2)
    while True:
        ids += [d.id for d in page]
        if token is None:
            break
        page, token = store.list_page(limit=2, page_token=token)
    assert ids == [d.id for d in reversed(made)]
    assert [d.id for d in store.list_page(model="m0")[0]] == [made[4].id, made[2].id, made[0].id]
    assert [d.id for d in store.list_page(states=(State.SUPERSEDED,))[0]] == [made[1].id]


@pytest.mark.parametrize("page_token", FOREIGN_TOKENS, ids=range(len(FOREIGN_TOKENS)))
def test_a_page_token_no_store_handed_out_is_a_usage_error(store: Any, page_token: str) -> None:
    with pytest.raises(UsageError, match="page_token"):
        store.list_page(page_token=page_token)


def test_latest_for_model_is_the_highest_revision_then_the_newest(store: Any) -> None:
    old, newest_of_two, other = (
        record("gemma", 1, T0),
        record("gemma", 3, T0 + timedelta(seconds=2)),
        record("gemma", 3, T0 + timedelta(seconds=1)),
    )
    for d in (old, newest_of_two, other):
        store.create(d)
    assert store.latest_for_model("gemma").id == newest_of_two.id
    assert store.latest_for_model("nobody") is None


def test_pending_notifications_are_the_unconfirmed_transitions(store: Any) -> None:
    sent = stored(store, record("a"))
    store.replace(replace(sent, published_sequence=sent.event_sequence))
    waiting = stored(store, record("b"))
    assert [d.id for d in store.pending_notifications()] == [waiting.id]


# --- the work queue and the events --------------------------------------------------------


@dataclass
class Channel:
    """A publisher, and what a consumer of its topic receives."""

    publisher: Any
    received: Callable[[int], list[Any]]


@pytest.fixture
def names() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


def _subscribed(emulator: Any, names: str, topic: str) -> Callable[[int], list[Any]]:
    ensure_topic(emulator.client, emulator.project, topic)
    subscriber = pubsub_v1.SubscriberClient()
    subscription = ensure_subscription(subscriber, emulator.project, f"{topic}-sub", topic)
    return lambda expected: pull(subscriber, subscription, expected)


@pytest.fixture(params=["pubsub", "fake"])
def queue(request: pytest.FixtureRequest, names: str) -> Channel:
    if request.param == "fake":
        fake = FakeQueue()
        return Channel(fake, lambda _: list(fake.messages))
    emulator = request.getfixturevalue("pubsub_emulator")
    received = _subscribed(emulator, names, f"{names}-validated")
    work = PubSubWorkQueue(emulator.client, emulator.project, f"{names}-validated")
    return Channel(work, lambda expected: [read_validated(m) for m in received(expected)])


@pytest.fixture(params=["pubsub", "fake"])
def events(request: pytest.FixtureRequest, names: str) -> Channel:
    if request.param == "fake":
        fake = FakeEvents()
        return Channel(fake, lambda _: [state for _, state in fake.published])
    emulator = request.getfixturevalue("pubsub_emulator")
    received = _subscribed(emulator, names, f"{names}-events")
    publisher = CloudEventPublisher(emulator.client, emulator.project, f"{names}-events")
    return Channel(publisher, lambda expected: [m.attributes["state"] for m in received(expected)])


def test_the_work_queue_hands_over_deployment_ids_at_least_once(queue: Channel) -> None:
    queue.publisher.publish_validated("llama-ft-0123456789ab")
    queue.publisher.publish_validated("llama-ft-0123456789ab")  # a re-queue by reconcile
    assert queue.received(2) == ["llama-ft-0123456789ab"] * 2


def test_an_event_id_is_the_record_and_its_transition_number(events: Channel) -> None:
    d = advance(record(), State.VALIDATING, T0)
    first = events.publisher.publish(d)
    assert first == events.publisher.publish(d) == f"{d.id}-{d.event_sequence}"
    assert events.received(2) == ["VALIDATING", "VALIDATING"]


# --- the serving logs ---------------------------------------------------------------------


@dataclass
class Logged:
    """A ServingLogs, a deployment whose log has lines, and one whose log has none."""

    logs: Any
    deployment: Deployment
    silent: Deployment


@pytest.fixture(scope="module")
def echo_vertex(gcs: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The Vertex AI emulator (echo engine) with one model deployed and queried four times."""
    import requests

    from modeldrop.adapters.vertex_deployer import VertexDeployer
    from modeldrop.local.vertex import VertexEmulator
    from tests.fixtures.vertex import BUCKET, upload_folder

    folder = tmp_path_factory.mktemp("contract-logs") / "echo-contract"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    upload_folder(gcs.client, folder, "models/echo-contract")
    cache = folder.parent / "cache"
    with VertexEmulator(engine="echo", cache_dir=cache, faults="", ca_dir=cache) as emulator:
        settings = Settings.from_env(
            {
                "GOOGLE_CLOUD_PROJECT": "modeldrop-local",
                "MODELDROP_REGION": "us-central1",
                "MODELDROP_VERTEX_API_ENDPOINT": emulator.url,
                "MODELDROP_LOGGING_API_ENDPOINT": emulator.url,
                "MODELDROP_VERTEX_ANONYMOUS": "true",
            }
        )
        deployer = VertexDeployer(settings)
        machine = {
            "machine_type": "g2-standard-12",
            "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1,
        }
        placement = {"attempt": 1, "region": "us-central1", "machine_spec": machine, "spot": False}
        d = new_deployment(BUCKET, "models/echo-contract", "fp", 1, datetime.now(UTC))
        d = replace(d, state=State.DEPLOYING, machine=machine, placement=placement)
        d = deploy_and_wait(deployer, d)
        for i in range(4):
            answer = requests.post(
                f"https://{d.endpoint_dns}/v1beta1/{d.endpoint}/chat/completions",
                json={"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 1},
                timeout=10,
                verify=emulator.ca_path,
            )
            assert answer.status_code == 200, answer.text
        yield CloudServingLogs(settings), d


@pytest.fixture(params=["vertex-emulator", "fake"])
def logged(request: pytest.FixtureRequest) -> Logged:
    if request.param == "fake":
        fake = FakeServingLogs()
        d, silent = record("logged"), record("silent")
        fake.entries[d.id] = [
            LogEntry(f"2026-11-24T09:30:{59 - i:02d}.000001Z", "INFO", f"line {6 - i}")
            for i in range(6)
        ]
        return Logged(fake, d, silent)
    logs, d = request.getfixturevalue("echo_vertex")
    silent = replace(d, endpoint=d.endpoint.rsplit("/", 1)[0] + "/never-deployed")
    return Logged(logs, d, silent)


def at(entry: LogEntry) -> datetime:
    return datetime.fromisoformat(entry.at.replace("Z", "+00:00"))


def test_serving_logs_are_newest_first_and_limited(logged: Logged) -> None:
    every = logged.logs.newest(logged.deployment, 100)
    assert len(every) >= 6
    assert [at(e) for e in every] == sorted((at(e) for e in every), reverse=True)
    assert all(isinstance(e, LogEntry) for e in every)
    assert all(e.severity in SEVERITIES and isinstance(e.text, str) for e in every)
    assert logged.logs.newest(logged.deployment, 3) == every[:3]
    assert logged.logs.newest(logged.deployment, 1) == every[:1]


def test_serving_logs_of_a_deployment_without_any_are_empty(logged: Logged) -> None:
    assert logged.logs.newest(logged.silent, 10) == []
