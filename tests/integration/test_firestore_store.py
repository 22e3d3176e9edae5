"""FirestoreDeploymentStore on the Firestore emulator: round trips, preconditions, queries."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, Field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore import CollectionReference

from modeldrop.adapters.firestore_store import FirestoreDeploymentStore
from modeldrop.api.keys import MAX_BYTES, valid_name
from modeldrop.domain.deployment import Deployment, State, advance, new_deployment, update
from modeldrop.errors import UsageError
from modeldrop.service import revisions
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import RecordTooLarge
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

T0 = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
THREADS = 16

VERDICT = {
    "verdict": "accepted",
    "architecture": "LlamaForCausalLM",
    "model_type": "llama",
    "matched_base": "Llama-3.1-8B",
    "parameters": 8_030_261_248,
    "weight_bytes": 16_060_522_496,
    "recommended_machine": {
        "machine_type": "g2-standard-12",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    },
    "findings": [
        {
            "code": "PICKLE_WEIGHTS",
            "severity": "warning",
            "message": "pytorch_model.bin is a pickle. Prefer safetensors.",
            "file": "pytorch_model.bin",
        },
        {
            "code": "VOCAB_RESIZED",
            "severity": "info",
            "message": "Vocabulary 128258.",
            "file": None,
        },
    ],
    # arrays inside arrays are not storable as such in Firestore: the store must wrap them
    "shapes": [[128256, 4096], [4096], [], [[1, 2], [3]]],
    "quantization": {"weight_block_size": [128, 128], "empty": {}},
}


@pytest.fixture
def collection(firestore_emulator) -> CollectionReference:
    """A collection of the test's own."""
    return firestore_emulator.client.collection(f"deployments-{uuid.uuid4().hex}")


@pytest.fixture
def store(firestore_emulator, collection: CollectionReference) -> FirestoreDeploymentStore:
    return FirestoreDeploymentStore(firestore_emulator.client, collection.id)


def detected(name: str = "llama-ft", revision: int = 1, at: datetime = T0) -> Deployment:
    return new_deployment("bucket-1", f"models/{name}", uuid.uuid4().hex, revision, at)


PLACED = {
    "region": "us-central1",
    "machine_spec": {
        "machine_type": "g2-standard-12",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    },
    "spot": True,
    "hourly_usd": 1.1505,
}


def full_deployment() -> Deployment:
    """A record with every field set, several transitions, microsecond datetimes."""
    d = detected()
    d = advance(d, State.VALIDATING, T0 + timedelta(microseconds=1), "validating")
    d = advance(
        d,
        State.VALIDATED,
        T0 + timedelta(seconds=1, microseconds=7),
        "accepted",
        validation=VERDICT,
        machine=VERDICT["recommended_machine"],
        overrides={
            "labels": {"team": "ml", "cost.center": "42"},
            "private_endpoint": {"project_allowlist": ["p1", "p2"]},
            "replicas": {"min": 1, "max": 2},
        },
    )
    d = advance(
        d,
        State.DEPLOYING,
        T0 + timedelta(seconds=2),
        "deploy started",
        operation="projects/p/locations/us-central1/operations/123",
        lease_expires_at=T0 + timedelta(minutes=5, microseconds=999999),
    )
    return advance(
        d,
        State.DEPLOYED,
        T0 + timedelta(minutes=20, microseconds=654321),
        "endpoint ready",
        endpoint="projects/p/locations/us-central1/endpoints/md-llama",
        endpoint_dns="md-llama.us-central1-1234.prediction.vertexai.goog",
        deployed_model_id="4242",
        error={
            "code": "NONE",
            "message": "kept for the round trip",
            "hint": "-",
            "logs": [{"at": "2026-11-24T12:00:00Z", "severity": "ERROR", "text": "boom"}],
        },
        published_sequence=3,
        claims=2,
        candidates=(PLACED, {**PLACED, "region": "europe-west4"}),
        preflight={
            "source": "recommend_spec",
            "regions": [{"region": "us-central1", "checked": True, "code": None, "message": None}],
            "base_model": "meta-llama/Llama-3.1-8B",
            "dropped": [{**PLACED, "region": "us-east4", "outcome": "no_quota"}],
            "cheapest": PLACED,
        },
        placement={"attempt": 2, **PLACED},
        promotion_pending=True,
        budget_hold="8129/10000",
        last_used_at=T0 + timedelta(minutes=9),
        deploy_round=2,
        private_endpoint={
            "ip": "10.0.0.2",
            "forwarding_rule": "projects/p/regions/us-central1/forwardingRules/md-x-2-1-psc",
            "address": "projects/p/regions/us-central1/addresses/md-x-2-1-ip",
            "service_attachment": "projects/tp/regions/us-central1/serviceAttachments/gkedpm-1",
            "network": "projects/p/global/networks/vpc",
            "tls_name": "ep-us-central1-123.prediction.p.vertexai.goog",
        },
        blocked={
            "code": "BUDGET_EXCEEDED",
            "message": "over the cap",
            "hint": "wait",
            "running_hourly_usd": 1.5,
            "needed_hourly_usd": 0.8129,
            "cap": 2.0,
        },
        smoke_test={
            "kind": "chat",
            "passed": True,
            "started_at": T0 + timedelta(minutes=19),
            "tries": 2,
            "last_error": "connection refused",
            "latency_ms": 812,
            "excerpt": "Hello!",
            "at": T0 + timedelta(minutes=20),
        },
        attempts=(
            {
                **PLACED,
                "attempt": 1,
                "outcome": "stockout",
                "code": "VERTEX_STOCKOUT",
                "message": "Resources are insufficient in region: us-central1.",
                "at": T0,
            },
            {
                **PLACED,
                "attempt": 2,
                "outcome": "deployed",
                "code": None,
                "message": None,
                "at": T0 + timedelta(minutes=20, microseconds=654321),
            },
        ),
    )


def is_default(deployment: Deployment, f: Field[Any]) -> bool:
    value = getattr(deployment, f.name)
    if f.default is not MISSING:
        return value == f.default
    return f.default_factory is not MISSING and value == f.default_factory()


def run_together(count: int, call: Callable[[int], Any]) -> list[Any]:
    """`call(i)` for i < count, each in its own thread, released at the same moment."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def without_etag(d: Deployment | None) -> Deployment | None:
    return replace(d, etag=None) if d else None


def test_round_trip_of_every_field(
    store: FirestoreDeploymentStore, collection: CollectionReference
) -> None:
    original = full_deployment()
    assert {f.name for f in fields(original) if is_default(original, f)} == {"etag"}

    assert store.create(original) is True
    stored = store.get(original.id)

    assert stored is not None and stored.etag
    assert without_etag(stored) == original
    assert stored.validation["shapes"] == [[128256, 4096], [4096], [], [[1, 2], [3]]]
    assert type(stored.created_at) is datetime and stored.created_at.microsecond == 123456
    raw = collection.document(original.id).get()
    assert DatetimeWithNanoseconds.from_rfc3339(stored.etag) == raw.update_time
    document = raw.to_dict()
    assert document["state"] == "DEPLOYED"
    assert isinstance(document["created_at"], datetime)
    assert [t["state"] for t in document["history"]] == [
        "DETECTED",
        "VALIDATING",
        "VALIDATED",
        "DEPLOYING",
        "DEPLOYED",
    ]
    assert isinstance(document["history"][0]["at"], datetime)


def test_get_unknown_id(store: FirestoreDeploymentStore) -> None:
    assert store.get("nope-000000000000") is None


def test_replace_writes_every_field_and_returns_the_new_etag(
    store: FirestoreDeploymentStore, collection: CollectionReference
) -> None:
    original = full_deployment()
    store.create(original)
    read = store.get(original.id)
    changed = update(
        read,
        T0 + timedelta(hours=1),
        validation={"verdict": "accepted", "findings": []},  # fewer keys: the old ones must go
        overrides={},
        error=None,
        endpoint_dns=None,
        lease_expires_at=None,
    )

    written = store.replace(changed)

    assert written is not None and written.etag != read.etag
    assert store.get(original.id) == written
    document = collection.document(original.id).get().to_dict()
    assert document["validation"] == {"verdict": "accepted", "findings": []}
    assert document["error"] is None and "error" in document
    assert document["overrides"] == {}


def test_create_if_absent_under_contention(store: FirestoreDeploymentStore) -> None:
    d = detected()
    results = run_together(THREADS, lambda i: store.create(replace(d, fingerprint=f"fp-{i}")))

    assert sorted(results) == [False] * (THREADS - 1) + [True]
    winner = results.index(True)
    assert store.get(d.id).fingerprint == f"fp-{winner}"


def test_replace_with_a_stale_etag_writes_nothing(store: FirestoreDeploymentStore) -> None:
    d = detected()
    store.create(d)
    read = store.get(d.id)
    first = store.replace(advance(read, State.VALIDATING, T0 + timedelta(seconds=1)))
    assert first is not None

    stale = advance(read, State.SUPERSEDED, T0 + timedelta(seconds=2), "late writer")

    assert store.replace(stale) is None
    assert store.get(d.id) == first


def test_one_claim_wins_among_concurrent_replaces(store: FirestoreDeploymentStore) -> None:
    d = detected()
    store.create(d)
    read = store.get(d.id)

    def claim(i: int) -> Deployment | None:
        at = T0 + timedelta(seconds=1)
        return store.replace(advance(read, State.VALIDATING, at, f"worker-{i}"))

    results = run_together(THREADS, claim)

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get(d.id) == winners[0]
    assert winners[0].history[-1].note == f"worker-{results.index(winners[0])}"


def test_replace_after_delete_does_not_recreate(
    store: FirestoreDeploymentStore, collection: CollectionReference
) -> None:
    d = detected()
    store.create(d)
    read = store.get(d.id)
    collection.document(d.id).delete()

    assert store.replace(advance(read, State.VALIDATING, T0)) is None
    assert store.get(d.id) is None


def test_replace_needs_an_etag(store: FirestoreDeploymentStore) -> None:
    d = detected()
    store.create(d)
    with pytest.raises(ValueError, match="etag"):
        store.replace(d)


def test_a_record_over_the_document_limit_is_record_too_large(
    store: FirestoreDeploymentStore,
) -> None:
    d = detected()
    store.create(d)
    huge = update(store.get(d.id), T0, validation={"v": "x" * (2**20 + 10)})
    with pytest.raises(RecordTooLarge) as caught:
        store.replace(huge)
    assert caught.value.code == "RECORD_TOO_LARGE" and len(caught.value.message) < 400
    with pytest.raises(RecordTooLarge):
        store.create(replace(huge, id=d.id + "-new", etag=None))
    assert store.get(d.id).validation == d.validation  # nothing of it was written


def test_etag_of_a_replaced_record_guards_the_next_replace(
    store: FirestoreDeploymentStore,
) -> None:
    d = detected()
    store.create(d)
    first = store.replace(advance(store.get(d.id), State.VALIDATING, T0))
    second = store.replace(advance(first, State.VALIDATED, T0 + timedelta(seconds=1)))

    assert second is not None and second.etag not in (first.etag, None)
    assert store.replace(advance(first, State.REJECTED, T0)) is None
    assert store.get(d.id).state is State.VALIDATED


@pytest.fixture
def populated(store: FirestoreDeploymentStore) -> list[Deployment]:
    """23 records: 3 models, several states, some sharing created_at; newest first."""
    states = (State.DETECTED, State.DEPLOYED, State.REJECTED, State.FAILED)
    records = []
    for i in range(23):
        at = T0 + timedelta(seconds=i // 2)  # pairs share a creation time: id breaks the tie
        d = replace(detected(f"model-{i % 3}", revision=i, at=at), state=states[i % 4])
        assert store.create(d)
        records.append(d)
    return sorted(records, key=lambda d: (d.created_at, d.id), reverse=True)


def all_pages(store: FirestoreDeploymentStore, limit: int, **filters: Any) -> list[list[str]]:
    pages, token = [], None
    while True:
        page, token = store.list_page(limit=limit, page_token=token, **filters)
        pages.append([d.id for d in page])
        if token is None:
            return pages


def test_list_orders_newest_first_with_id_as_tie_break(
    store: FirestoreDeploymentStore, populated: list[Deployment]
) -> None:
    page, token = store.list_page(limit=100)

    assert [d.id for d in page] == [d.id for d in populated]
    assert token is None
    assert all(d.etag for d in page)


@pytest.mark.parametrize("limit", [1, 4, 5, 23])
def test_list_pages_without_duplicates_or_gaps(
    store: FirestoreDeploymentStore, populated: list[Deployment], limit: int
) -> None:
    pages = all_pages(store, limit)

    assert [d for page in pages for d in page] == [d.id for d in populated]
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit  # no empty last page


@pytest.mark.parametrize(
    "filters",
    [
        {"states": (State.DEPLOYED,)},
        {"states": (State.DEPLOYED, State.FAILED)},
        {"model": "model-1"},
        {"model": "model-2", "states": (State.DETECTED, State.REJECTED)},
        {"model": "unknown"},
    ],
)
def test_list_filters(
    store: FirestoreDeploymentStore, populated: list[Deployment], filters: dict[str, Any]
) -> None:
    expected = [
        d.id
        for d in populated
        if d.state in filters.get("states", tuple(State))
        and filters.get("model", d.model) == d.model
    ]

    pages = all_pages(store, 3, **filters)

    assert [d for page in pages for d in page] == expected


def test_list_takes_a_state_named_many_times(
    store: FirestoreDeploymentStore, populated: list[Deployment]
) -> None:
    # 70 states, 10 distinct: Firestore's "in" takes at most 30 values (found by schemathesis)
    states = tuple(State) * 7
    assert [i for page in all_pages(store, 50, states=states) for i in page] == [
        d.id for d in populated
    ]


def test_list_rejects_bad_arguments(store: FirestoreDeploymentStore) -> None:
    with pytest.raises(UsageError, match="page_token"):
        store.list_page(page_token="not-a-token")
    with pytest.raises(UsageError, match="limit"):
        store.list_page(limit=0)


def test_latest_for_model_picks_the_highest_revision(store: FirestoreDeploymentStore) -> None:
    for revision, minutes in ((1, 0), (3, 1), (2, 2)):  # revision 2 is the newest created
        store.create(detected("gemma-ft", revision, T0 + timedelta(minutes=minutes)))
    store.create(detected("other", 9))

    latest = store.latest_for_model("gemma-ft")

    assert latest is not None and latest.revision == 3 and latest.etag
    assert store.latest_for_model("missing") is None


# ids and names outside modeldrop.api.keys; Firestore raises on most of them when asked
UNUSABLE = ["a" * 2000, "é" * 600, "", ".", "..", "__x__", "a/b", "\ud800"]


@pytest.mark.parametrize("key", UNUSABLE, ids=range(len(UNUSABLE)))
def test_ids_and_names_firestore_cannot_take_find_nothing(
    store: FirestoreDeploymentStore, populated: list[Deployment], key: str
) -> None:
    assert store.get(key) is None
    assert store.latest_for_model(key) is None
    if key:  # "" is no filter
        assert store.list_page(model=key) == ([], None)


def test_the_longest_name_the_keys_allow_is_stored_and_found(
    store: FirestoreDeploymentStore,
) -> None:
    name = "é" * (MAX_BYTES // 2)  # exactly MAX_BYTES bytes
    record = detected(name)
    assert valid_name(record.model) and len(record.model.encode()) == MAX_BYTES
    assert store.create(record)
    assert store.latest_for_model(name).id == record.id
    assert [d.id for d in store.list_page(model=name)[0]] == [record.id]
    assert store.get("x" * MAX_BYTES) is None  # the longest id: asked, and simply absent


def test_revisions_reaching_deployed_at_once_leave_exactly_one_serving(
    store: FirestoreDeploymentStore, tmp_path
) -> None:
    """Eight revisions of one name promoted in eight threads against real Firestore
    preconditions: the newest serves, every promotion is done, and the pointer's `previous` is
    a revision that served before it (none when the newest happened to create the pointer)."""
    harness = make_harness(tmp_path)
    harness.ctx.store = store
    ids = []
    for revision in range(1, 9):
        d = detected("racing", revision, T0 + timedelta(seconds=revision))
        store.create(replace(d, state=State.DEPLOYED, promotion_pending=True))
        ids.append(d.id)

    run_together(len(ids), lambda i: revisions.promote(harness.ctx, store.get(ids[i])))

    pointer = store.get_pointer("racing")
    assert pointer is not None and pointer.serving == ids[-1]
    assert pointer.previous is None or pointer.previous in ids[:-1]
    assert not any(store.get(i).promotion_pending for i in ids)


def test_admissions_at_once_never_take_the_total_over_the_cap(
    store: FirestoreDeploymentStore, tmp_path
) -> None:
    """Six deployments admitted in six threads under a cap with room for one, against real
    Firestore: at most one is claimed; the others wait VALIDATED, blocked, holding nothing."""
    harness = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="1.00")  # one L4 machine
    harness.ctx.store = store
    ids = [
        upload_all(harness, write_valid(tmp_path / f"m{i}"), name=f"m{i}")[-1].id for i in range(6)
    ]
    assert {store.get(i).state for i in ids} == {State.VALIDATED}

    run_together(len(ids), lambda i: on_validated(harness.ctx, ids[i]))

    records = [store.get(i) for i in ids]
    claimed = [r for r in records if r.state is State.DEPLOYING]
    waiting = [r for r in records if r.state is State.VALIDATED]
    assert len(claimed) <= 1 and len(claimed) + len(waiting) == len(ids)
    assert all(r.blocked and r.budget_hold is None for r in waiting)
    assert len(harness.deployer.deploy_calls) == len(claimed)
