"""The validate -> deploy -> reconcile handlers on in-memory fakes: logic, not services."""

from __future__ import annotations

import os
import time

import pytest

from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import DeployError
from modeldrop.service.reconcile import reconcile
from modeldrop.service.validate import on_object_finalized
from tests.fixtures.bad_folders import CORPUS
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import BUCKET, make_harness


def test_happy_path_notifies_every_state_in_order(h, model):
    results = upload_all(h, model)
    assert results[:-1] == [None] * (len(results) - 1)  # incomplete until the last object
    record = results[-1]
    assert record.state is State.VALIDATED and h.queue.messages == [record.id]
    assert record.validation["matched_base"] == "Qwen2.5-0.5B"
    deploying = on_validated(h.ctx, record.id)
    assert deploying.state is State.DEPLOYING and deploying.operation
    assert reconcile(h.ctx).moved == {}
    h.deployer.finish()
    assert reconcile(h.ctx).moved == {record.id: "DEPLOYED"}
    final = h.store.get(record.id)
    assert (final.endpoint_dns, final.deployed_model_id) == ("127.0.0.1:9", "42")
    assert h.events.states(record.id) == [
        "DETECTED",
        "VALIDATING",
        "VALIDATED",
        "DEPLOYING",
        "DEPLOYED",
    ]
    assert not final.event_pending


@pytest.mark.parametrize("last", ["config.json", "tokenizer.json", "model.safetensors.index.json"])
def test_out_of_order_uploads_wait_for_the_last_file(h, model, last):
    names = [*sorted(p.name for p in model.iterdir() if p.name != last), last]
    results = upload_all(h, model, order=names)
    assert [r is None for r in results] == [True] * (len(names) - 1) + [False]
    assert len(h.store.rows) == 1


def test_duplicate_events_collapse_to_one_record_and_one_deploy(h, model):
    objects = upload_all(h, model)
    last = f"models/qwen-ft/{sorted(p.name for p in model.iterdir())[-1]}"
    for _ in range(5):
        on_object_finalized(h.ctx, BUCKET, last)
    assert len(h.store.rows) == 1 and len(h.queue.messages) == 1
    for _ in range(3):
        on_validated(h.ctx, h.queue.messages[0])
    assert h.deployer.deploy_calls == [objects[-1].id]


def test_rejected_folder_records_the_first_error_with_its_hint(h, model):
    CORPUS["gptq"][0](model)
    record = upload_all(h, model)[-1]
    assert record.state is State.REJECTED
    assert record.error["code"] == "QUANTIZED_CONFIG" and record.error["hint"]
    assert h.events.states(record.id)[-1] == "REJECTED" and h.queue.messages == []


def test_marker_mode_waits_then_rejects_a_broken_folder(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_COMPLETION_MODE="marker")
    assert all(r is None for r in upload_all(h, model))
    (model / "_READY").write_text("")
    record = upload_all(h, model, order=["_READY"])[-1]
    assert record.state is State.VALIDATED
    (model / "config.json").unlink()
    broken = upload_all(h, model, name="broken", order=["_READY", "tokenizer.json"])[-1]
    assert broken.state is State.REJECTED and broken.error["code"] == "CONFIG_MISSING"


def test_reupload_is_a_new_revision_and_supersedes_the_older_pre_deploy_one(h, model):
    first = upload_all(h, model)[-1]
    time.sleep(0.01)
    os.truncate(
        model / "model-00002-of-00002.safetensors",
        (model / "model-00002-of-00002.safetensors").stat().st_size,
    )
    second = upload_all(h, model, order=["model-00002-of-00002.safetensors"])[-1]
    assert second.id != first.id and second.revision > first.revision
    assert h.store.get(first.id).state is State.SUPERSEDED
    assert h.store.latest_for_model("qwen-ft").id == second.id


def test_folder_changing_during_the_settle_window_is_superseded(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_SETTLE_SECONDS="10")
    names = sorted(p.name for p in model.iterdir())
    h.bucket.upload(BUCKET, "models/m", model)

    def sleep_while_another_file_lands(seconds):
        h.clock.advance(seconds)
        time.sleep(0.01)
        h.bucket.upload(BUCKET, "models/m", model, ["tokenizer.json"])

    h.ctx.sleep = sleep_while_another_file_lands
    record = on_object_finalized(h.ctx, BUCKET, f"models/m/{names[-1]}")
    assert record.state is State.SUPERSEDED


def test_retryable_deploy_error_raises_and_the_redelivery_deploys(h, model):
    record = upload_all(h, model)[-1]
    h.deployer.failures.append(DeployError("busy", code="VERTEX_UNAVAILABLE", retryable=True))
    with pytest.raises(DeployError):
        on_validated(h.ctx, record.id)
    assert h.store.get(record.id).state is State.DEPLOYING and not h.store.get(record.id).operation
    redelivered = on_validated(h.ctx, record.id)
    assert redelivered.operation and len(h.deployer.deploy_calls) == 2


def test_permanent_deploy_error_fails_with_the_hint(h, model):
    record = upload_all(h, model)[-1]
    h.deployer.failures.append(DeployError("no quota", "Request quota X", code="VERTEX_QUOTA"))
    failed = on_validated(h.ctx, record.id)
    assert failed.state is State.FAILED
    assert failed.error == {
        "code": "VERTEX_QUOTA",
        "message": "no quota",
        "hint": "Request quota X",
        "logs": [],  # the server's last lines: none, it never started
    }
    assert h.events.states(record.id)[-1] == "FAILED"


def crash_after_deploy(h, model):
    """Upload, then let the deploy function die right after Vertex AI accepted the Deploy."""
    record = upload_all(h, model)[-1]
    real_deploy = h.deployer.deploy

    def deploy_then_crash(deployment):
        real_deploy(deployment)
        raise KeyboardInterrupt("the function instance died")

    h.deployer.deploy = deploy_then_crash
    with pytest.raises(KeyboardInterrupt):
        on_validated(h.ctx, record.id)
    h.deployer.deploy = real_deploy
    return record


def test_crash_between_deploy_and_record_is_recovered_without_a_second_endpoint(h, model):
    record = crash_after_deploy(h, model)
    assert reconcile(h.ctx).moved == {}  # lease still held
    h.clock.advance(h.ctx.settings.lease_seconds + 1)
    reconcile(h.ctx)
    assert len(h.deployer.endpoints) == 1 and h.store.get(record.id).endpoint
    h.deployer.finish()
    assert reconcile(h.ctx).moved == {record.id: "DEPLOYED"}


def test_crash_retry_whose_original_operation_fails_ends_failed_on_the_next_poll(h, model):
    record = crash_after_deploy(h, model)
    h.clock.advance(h.ctx.settings.lease_seconds + 1)
    reconcile(h.ctx)  # the retry finds its endpoint (ALREADY_EXISTS), not the operation
    (operation,) = h.deployer.operations
    retried = h.store.get(record.id)
    assert retried.state is State.DEPLOYING and retried.endpoint and not retried.operation
    assert reconcile(h.ctx).moved == {}
    assert h.store.get(record.id).operation == operation
    error = {"code": "VERTEX_RESOURCE_EXHAUSTED", "message": "stockout", "hint": "try later"}
    h.deployer.finish(operation, error=error)
    h.clock.advance(60)
    assert reconcile(h.ctx).moved == {record.id: "FAILED"}
    assert h.store.get(record.id).error == {**error, "logs": []}


def test_lost_notifications_and_queue_messages_are_repaired_by_reconcile(h, model):
    h.events.failing = h.queue.failing = True
    record = upload_all(h, model)[-1]
    assert h.store.get(record.id).event_pending and h.queue.messages == []
    h.events.failing = h.queue.failing = False
    h.clock.advance(h.ctx.settings.lease_seconds + 1)
    reconcile(h.ctx)
    assert h.queue.messages == [record.id]
    assert (
        h.events.states(record.id)[-1] == "VALIDATED" and not h.store.get(record.id).event_pending
    )


def test_stale_validating_claim_is_taken_over(h, model):
    from dataclasses import replace

    from modeldrop.domain.deployment import advance

    record = upload_all(h, model)[-1]
    row, version = h.store.rows[record.id]
    stuck = advance(replace(row, state=State.DETECTED), State.VALIDATING, h.clock())
    h.store.rows[record.id] = (replace(stuck, lease_expires_at=h.clock()), version)
    h.clock.advance(1)
    assert reconcile(h.ctx).moved == {record.id: "VALIDATED"}


def test_failed_operation_ends_failed(h, model):
    record = upload_all(h, model)[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish(error={"code": "VERTEX_INVALID_ARGUMENT", "message": "bad", "hint": "fix"})
    reconcile(h.ctx)
    assert h.store.get(record.id).state is State.FAILED


def test_objects_outside_the_root_are_ignored(h):
    assert on_object_finalized(h.ctx, BUCKET, "gcloud/tmp/parallel_composite_uploads/x") is None
    assert on_object_finalized(h.ctx, BUCKET, "models/loose-file.txt") is None
