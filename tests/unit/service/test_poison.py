"""Poison inputs end in a final state, never raise out of a handler (unless redelivery is wanted),
and never keep a record busy: broken indexes, validation failing unexpectedly, storage and
Vertex AI failing every time, a verdict too large to record, folder names Vertex cannot take,
and events that cannot concern modeldrop."""

from __future__ import annotations

import contextlib
import json

import pytest

from modeldrop.domain.deployment import State
from modeldrop.domain.findings import Verdict, warning
from modeldrop.errors import AccessError
from modeldrop.service import validate
from modeldrop.service.deploy import on_validated
from modeldrop.service.lifecycle import MAX_DEPLOY_TIME, poll_deploy, start_delete
from modeldrop.service.ports import DeployError
from modeldrop.service.reconcile import reconcile
from modeldrop.service.validate import on_object_finalized
from modeldrop.settings import SETTINGS
from tests.fixtures.model_folders import INDEX, SHARD1
from tests.fixtures.poison_events import DEEP
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import BUCKET

ATTEMPTS = int(SETTINGS["max_attempts"].default)


@pytest.mark.parametrize(
    ("bucket", "name"),
    [
        ("someone-elses-bucket", "models/m/config.json"),
        (BUCKET, "models/../../x"),
        (BUCKET, "models/./m/config.json"),
        (BUCKET, "models//m/config.json"),
        (BUCKET, "models/m/config.json\n"),
        (BUCKET, "models/\ud800/config.json"),
        (BUCKET, "models/m/" + "x" * 1020),
        (BUCKET, "elsewhere/m/config.json"),
    ],
    ids=["bucket", "dotdot", "dot", "slashes", "control", "surrogate", "too-long", "outside"],
)
def test_events_that_cannot_concern_modeldrop_list_nothing(h, bucket, name):
    def must_not_list(uri):
        raise AssertionError(f"listed {uri}")

    h.ctx.open_folder = must_not_list
    assert on_object_finalized(h.ctx, bucket, name) is None
    assert h.store.rows == {}


BROKEN_INDEXES = {
    "list-values": json.dumps({"weight_map": {"a": [SHARD1]}}),
    "nested-100000-deep": '{"weight_map": ' + DEEP + "}",
    "not-json": "{weight_map",
    "not-utf8": b"\xff\xfe{}",
    "no-weight-map": json.dumps({"metadata": {}}),
    "weight-map-list": json.dumps({"weight_map": [SHARD1]}),
    "shard-outside-the-folder": json.dumps({"weight_map": {"a": "../x.safetensors"}}),
    "shard-name-too-long": json.dumps({"weight_map": {"a": "x" * 5000}}),
}


@pytest.mark.parametrize("content", BROKEN_INDEXES.values(), ids=BROKEN_INDEXES)
def test_a_broken_index_ends_rejected_on_the_last_upload(h, model, content):
    (model / INDEX).write_bytes(content if isinstance(content, bytes) else content.encode())
    record = upload_all(h, model)[-1]
    assert record.state is State.REJECTED
    assert record.error["code"].startswith("INDEX_"), record.error
    assert len(h.store.rows) == 1


def test_only_a_few_index_files_are_read(h, model):
    junk = [f"junk-{n:02}.index.json" for n in range(20)]
    for name in junk:
        (model / name).write_text(DEEP)
    record = upload_all(h, model)[-1]
    assert record.state is State.REJECTED and record.error["code"] == "FOLDER_TOO_MANY_FILES"
    # over every event: 8 of them, each read once; validation refuses to read any
    assert [h.bucket.reads[name] for name in junk] == [1] * validate.MAX_INDEX_READS + [0] * 12


@pytest.mark.parametrize("failure", [RuntimeError("x" * 10**6), RecursionError(), MemoryError()])
def test_validation_raising_unexpectedly_is_a_rejection(h, model, failure):
    h.bucket.failures["config.json"] = failure
    record = upload_all(h, model)[-1]
    assert record.state is State.REJECTED and record.error["code"] == "INTERNAL_ERROR"
    assert type(failure).__name__ in record.error["message"]
    assert len(json.dumps(record.validation)) < 2000


def test_storage_errors_are_retried_then_the_record_fails(h, model):
    h.bucket.failures["config.json"] = AccessError("Cannot read config.json.", "Check storage.")
    with pytest.raises(AccessError):  # the event is delivered again
        upload_all(h, model)
    (record_id,) = h.store.rows
    for attempt in range(2, ATTEMPTS + 1):
        assert h.store.get(record_id).claims == attempt - 1
        h.clock.advance(1)
        assert reconcile(h.ctx).errors.keys() == ({record_id} if attempt < ATTEMPTS else set())
    failed = h.store.get(record_id)
    assert failed.state is State.FAILED and failed.error["code"] == "ACCESS_ERROR"
    assert (
        failed.error["hint"].startswith("Check storage.") and str(ATTEMPTS) in failed.error["hint"]
    )
    assert h.events.states(record_id)[-1] == "FAILED"


def test_storage_recovering_before_the_bound_validates(h, model):
    h.bucket.failures["config.json"] = AccessError("Cannot read config.json.")
    with pytest.raises(AccessError):
        upload_all(h, model)
    h.bucket.failures.clear()
    h.clock.advance(1)
    (record_id,) = h.store.rows
    assert reconcile(h.ctx).moved == {record_id: "VALIDATED"}
    validated = h.store.get(record_id)
    assert (validated.claims, validated.error) == (0, None)


def test_a_worker_dying_in_validation_every_time_ends_failed(h, model):
    h.bucket.failures["config.json"] = SystemExit("the function ran out of memory")
    with pytest.raises(SystemExit):
        upload_all(h, model)
    (record_id,) = h.store.rows
    for _ in range(ATTEMPTS):
        h.clock.advance(h.ctx.settings.lease_seconds + 1)
        with contextlib.suppress(SystemExit):  # the worker "dies" again
            reconcile(h.ctx)
    failed = h.store.get(record_id)
    assert failed.state is State.FAILED and failed.error["code"] == "ATTEMPTS_EXHAUSTED"
    assert failed.history[-2].state is State.VALIDATING


def test_vertex_unavailable_every_time_is_redelivered_then_fails(h, model):
    record = upload_all(h, model)[-1]
    busy = DeployError("Vertex AI answered UNAVAILABLE", "Retried.", "VERTEX_UNAVAILABLE", True)
    h.deployer.failures = [busy] * ATTEMPTS
    for _ in range(ATTEMPTS - 1):
        with pytest.raises(DeployError):  # Pub/Sub delivers the message again
            on_validated(h.ctx, record.id)
    failed = on_validated(h.ctx, record.id)  # the last attempt is acknowledged
    assert failed.state is State.FAILED and failed.error["code"] == "VERTEX_UNAVAILABLE"
    assert len(h.deployer.deploy_calls) == ATTEMPTS
    assert h.events.states(record.id)[-2:] == ["DEPLOYING", "FAILED"]


def test_a_permanent_error_watching_a_deploy_ends_failed(h, model):
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    denied = DeployError("Permission denied on the operation", "Grant the role.", "VERTEX_DENIED")
    h.deployer.poll_failures = [denied]
    reconcile(h.ctx)
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "VERTEX_DENIED"
    assert failed.endpoint is None and h.deployer.endpoints == {}  # nothing left billing


def test_a_crash_deleting_the_endpoint_of_a_failed_deploy_is_a_passing_error(h, model):
    """What deleting the endpoint raises right after a permanent error is handled like any
    poll's error (here: unreadable, so passing): the record is left failing, never stuck."""
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    h.deployer.poll_failures = [DeployError("Permission denied", "Grant it.", "VERTEX_DENIED")]
    h.deployer.undeploy_failures = [TypeError("'NoneType' object is not subscriptable")]
    with pytest.raises(DeployError) as raised:
        poll_deploy(h.ctx, h.store.get(record.id))
    assert raised.value.code == "VERTEX_UNREADABLE" and raised.value.retryable
    failing = h.store.get(record.id)
    assert failing.state is State.DEPLOYING and failing.error["code"] == "VERTEX_DENIED"
    reconcile(h.ctx)
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "VERTEX_DENIED"
    assert h.deployer.endpoints == {}


def test_a_deploy_that_never_finishes_ends_failed_with_its_endpoint_deleted(h, model):
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    assert len(h.deployer.endpoints) == 1  # made by the deploy, its operation still running
    h.clock.advance(MAX_DEPLOY_TIME.total_seconds() + 1)
    reconcile(h.ctx)
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "DEPLOY_TIMEOUT"
    assert failed.attempts[-1]["outcome"] == "error" and h.deployer.endpoints == {}


def test_an_endpoint_that_cannot_be_deleted_ends_failed_saying_so(h, model):
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    denied = DeployError("Permission denied on the operation", "Grant the role.", "VERTEX_DENIED")
    busy = DeployError("Vertex AI answered UNAVAILABLE", "Retried.", "VERTEX_UNAVAILABLE", True)
    h.deployer.poll_failures = [denied]
    h.deployer.undeploy_failures = [busy] * 3
    assert record.id in reconcile(h.ctx).errors  # failed; deleting its endpoint goes on
    assert record.id in reconcile(h.ctx).errors
    failing = h.store.get(record.id)
    assert failing.state is State.DEPLOYING and failing.error["code"] == "VERTEX_DENIED"
    h.clock.advance(MAX_DEPLOY_TIME.total_seconds() + 1)
    reconcile(h.ctx)
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "ENDPOINT_NOT_DELETED"
    assert "VERTEX_DENIED" in failed.error["message"] and "bill" in failed.error["hint"]
    assert len(h.deployer.endpoints) == 1
    start_delete(h.ctx, failed)  # DELETE takes it down
    assert h.store.get(record.id).state is State.UNDEPLOYED and h.deployer.endpoints == {}


def test_a_passing_error_watching_a_deploy_is_retried_until_the_deploy_time_is_up(h, model):
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    busy = DeployError("Vertex AI answered UNAVAILABLE", "Retried.", "VERTEX_UNAVAILABLE", True)
    h.deployer.poll_failures = [busy, busy]
    assert record.id in reconcile(h.ctx).errors  # looked at again next tick
    assert h.store.get(record.id).state is State.DEPLOYING
    h.clock.advance(MAX_DEPLOY_TIME.total_seconds() + 1)
    reconcile(h.ctx)
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "VERTEX_UNAVAILABLE"


def test_an_unreadable_answer_watching_a_deploy_never_keeps_it_busy(h, model):
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    h.deployer.poll_failures = [TypeError("'NoneType' object is not subscriptable")] * 2
    assert record.id in reconcile(h.ctx).errors  # looked at again next tick
    assert h.store.get(record.id).state is State.DEPLOYING
    h.clock.advance(MAX_DEPLOY_TIME.total_seconds() + 1)
    reconcile(h.ctx)
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "VERTEX_UNREADABLE"
    assert "TypeError" in failed.error["message"]


def test_a_verdict_too_large_for_a_record_ends_rejected(h, model, monkeypatch):
    findings = tuple(warning("W", "y" * 200, f"f{n}") for n in range(10_000))
    monkeypatch.setattr(validate, "validate_folder", lambda *a: Verdict(findings=findings))
    record = upload_all(h, model)[-1]
    assert record.state is State.REJECTED and record.error["code"] == "RECORD_TOO_LARGE"
    assert record.validation is None
    assert h.events.states(record.id)[-1] == "REJECTED"


@pytest.mark.parametrize(
    ("folder", "state"),
    [("probe-a[b]", State.REJECTED), ("what?", State.REJECTED), ("名前 ü x", State.VALIDATED)],
)
def test_folder_names_vertex_cannot_take_are_rejected_with_a_hint(h, model, folder, state):
    record = upload_all(h, model, name=folder)[-1]
    assert record.state is state and record.model == folder
    if state is State.REJECTED:
        assert record.error["code"] == "FOLDER_NAME_UNSUPPORTED"
        assert "Rename the folder" in record.error["hint"]
