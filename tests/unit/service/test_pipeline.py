"""The validate -> deploy -> reconcile handlers on in-memory fakes: logic, not services."""

from __future__ import annotations

import os
import time

import pytest

from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import DeployError
from modeldrop.service.reconcile import reconcile
from modeldrop.service.upload import on_object_finalized
from tests.unit.service.fakes import make_context
from tests.unit.validation.test_bad_inputs import CORPUS, write_valid

BUCKET = "models-bucket"


@pytest.fixture
def env(tmp_path):
    return make_context(tmp_path)


@pytest.fixture
def model(tmp_path):
    return write_valid(tmp_path / "source")


def upload_all(ctx, bucket, model, name="qwen-ft", order=None):
    """Upload file by file, firing one finalize event per object like GCS does."""
    names = order or sorted(p.name for p in model.iterdir())
    results = []
    for file_name in names:
        (obj,) = bucket.upload(BUCKET, f"models/{name}", model, [file_name])
        results.append(on_object_finalized(ctx, BUCKET, obj))
    return results


def test_happy_path_notifies_every_state_in_order(env, model):
    ctx, store, events, queue, deployer, bucket, clock = env
    results = upload_all(ctx, bucket, model)
    assert results[:-1] == [None] * (len(results) - 1)  # incomplete until the last object
    record = results[-1]
    assert record.state is State.VALIDATED and queue.messages == [record.id]
    assert record.validation["matched_base"] == "Qwen2.5-0.5B"
    deploying = on_validated(ctx, record.id)
    assert deploying.state is State.DEPLOYING and deploying.operation
    assert reconcile(ctx).moved == {}
    deployer.finish()
    assert reconcile(ctx).moved == {record.id: "DEPLOYED"}
    final = store.get(record.id)
    assert (final.endpoint_dns, final.deployed_model_id) == ("127.0.0.1:9", "42")
    assert events.states(record.id) == [
        "DETECTED",
        "VALIDATING",
        "VALIDATED",
        "DEPLOYING",
        "DEPLOYED",
    ]
    assert not final.event_pending


@pytest.mark.parametrize("last", ["config.json", "tokenizer.json", "model.safetensors.index.json"])
def test_out_of_order_uploads_wait_for_the_last_file(env, model, last):
    ctx, store, *_, bucket, _ = env
    names = sorted(p.name for p in model.iterdir() if p.name != last) + [last]
    results = upload_all(ctx, bucket, model, order=names)
    assert [r is None for r in results] == [True] * (len(names) - 1) + [False]
    assert len(store.rows) == 1


def test_duplicate_events_collapse_to_one_record_and_one_deploy(env, model):
    ctx, store, events, queue, deployer, bucket, _ = env
    objects = upload_all(ctx, bucket, model)
    last = f"models/qwen-ft/{sorted(p.name for p in model.iterdir())[-1]}"
    for _ in range(5):
        on_object_finalized(ctx, BUCKET, last)
    assert len(store.rows) == 1 and len(queue.messages) == 1
    for _ in range(3):
        on_validated(ctx, queue.messages[0])
    assert deployer.deploy_calls == [objects[-1].id]


def test_rejected_folder_records_the_first_error_with_its_hint(env, model):
    ctx, store, events, queue, *_ = env
    bucket = env[5]
    CORPUS["gptq"][0](model)
    record = upload_all(ctx, bucket, model)[-1]
    assert record.state is State.REJECTED
    assert record.error["code"] == "QUANTIZED_CONFIG" and record.error["hint"]
    assert events.states(record.id)[-1] == "REJECTED" and queue.messages == []


def test_marker_mode_waits_then_rejects_a_broken_folder(tmp_path, model):
    ctx, store, events, queue, deployer, bucket, _ = make_context(
        tmp_path, MODELDROP_COMPLETION_MODE="marker"
    )
    assert all(r is None for r in upload_all(ctx, bucket, model))
    (model / "_READY").write_text("")
    record = upload_all(ctx, bucket, model, order=["_READY"])[-1]
    assert record.state is State.VALIDATED
    (model / "config.json").unlink()
    broken = upload_all(ctx, bucket, model, name="broken", order=["_READY", "tokenizer.json"])[-1]
    assert broken.state is State.REJECTED and broken.error["code"] == "CONFIG_MISSING"


def test_reupload_is_a_new_revision_and_supersedes_the_older_pre_deploy_one(env, model):
    ctx, store, events, queue, deployer, bucket, clock = env
    first = upload_all(ctx, bucket, model)[-1]
    time.sleep(0.01)
    os.truncate(
        model / "model-00002-of-00002.safetensors",
        (model / "model-00002-of-00002.safetensors").stat().st_size,
    )
    second = upload_all(ctx, bucket, model, order=["model-00002-of-00002.safetensors"])[-1]
    assert second.id != first.id and second.revision > first.revision
    assert store.get(first.id).state is State.SUPERSEDED
    assert store.latest_for_model("qwen-ft").id == second.id


def test_folder_changing_during_the_settle_window_is_superseded(tmp_path, model):
    ctx, store, events, queue, deployer, bucket, clock = make_context(
        tmp_path, MODELDROP_SETTLE_SECONDS="10"
    )
    names = sorted(p.name for p in model.iterdir())
    bucket.upload(BUCKET, "models/m", model)

    def sleep_while_another_file_lands(seconds):
        clock.advance(seconds)
        time.sleep(0.01)
        bucket.upload(BUCKET, "models/m", model, ["tokenizer.json"])

    ctx.sleep = sleep_while_another_file_lands
    record = on_object_finalized(ctx, BUCKET, f"models/m/{names[-1]}")
    assert record.state is State.SUPERSEDED


def test_retryable_deploy_error_raises_and_the_redelivery_deploys(env, model):
    ctx, store, events, queue, deployer, bucket, _ = env
    record = upload_all(ctx, bucket, model)[-1]
    deployer.failures.append(DeployError("busy", code="VERTEX_UNAVAILABLE", retryable=True))
    with pytest.raises(DeployError):
        on_validated(ctx, record.id)
    assert store.get(record.id).state is State.DEPLOYING and not store.get(record.id).operation
    redelivered = on_validated(ctx, record.id)
    assert redelivered.operation and len(deployer.deploy_calls) == 2


def test_permanent_deploy_error_fails_with_the_hint(env, model):
    ctx, store, events, queue, deployer, bucket, _ = env
    record = upload_all(ctx, bucket, model)[-1]
    deployer.failures.append(DeployError("no quota", "Request quota X", code="VERTEX_QUOTA"))
    failed = on_validated(ctx, record.id)
    assert failed.state is State.FAILED
    assert failed.error == {
        "code": "VERTEX_QUOTA",
        "message": "no quota",
        "hint": "Request quota X",
    }
    assert events.states(record.id)[-1] == "FAILED"


def test_crash_between_deploy_and_record_is_recovered_without_a_second_endpoint(env, model):
    ctx, store, events, queue, deployer, bucket, clock = env
    record = upload_all(ctx, bucket, model)[-1]
    real_deploy = deployer.deploy

    def deploy_then_crash(deployment):
        real_deploy(deployment)
        raise KeyboardInterrupt("the function instance died")

    deployer.deploy = deploy_then_crash
    with pytest.raises(KeyboardInterrupt):
        on_validated(ctx, record.id)
    deployer.deploy = real_deploy
    assert reconcile(ctx).moved == {}  # lease still held
    clock.advance(ctx.settings.lease_seconds + 1)
    reconcile(ctx)
    assert len(deployer.endpoints) == 1 and store.get(record.id).endpoint
    deployer.ready_all()
    assert reconcile(ctx).moved == {record.id: "DEPLOYED"}


def test_lost_notifications_and_queue_messages_are_repaired_by_reconcile(env, model):
    ctx, store, events, queue, deployer, bucket, clock = env
    events.failing = queue.failing = True
    record = upload_all(ctx, bucket, model)[-1]
    assert store.get(record.id).event_pending and queue.messages == []
    events.failing = queue.failing = False
    clock.advance(ctx.settings.lease_seconds + 1)
    reconcile(ctx)
    assert queue.messages == [record.id]
    assert events.states(record.id)[-1] == "VALIDATED" and not store.get(record.id).event_pending


def test_stale_validating_claim_is_taken_over(env, model):
    ctx, store, events, queue, deployer, bucket, clock = env
    from dataclasses import replace

    from modeldrop.domain.deployment import advance

    record = upload_all(ctx, bucket, model)[-1]
    row, version = store.rows[record.id]
    stuck = advance(replace(row, state=State.DETECTED), State.VALIDATING, clock())
    store.rows[record.id] = (replace(stuck, lease_expires_at=clock()), version)
    clock.advance(1)
    assert reconcile(ctx).moved == {record.id: "VALIDATED"}


def test_failed_operation_ends_failed(env, model):
    ctx, store, events, queue, deployer, bucket, _ = env
    record = upload_all(ctx, bucket, model)[-1]
    on_validated(ctx, record.id)
    deployer.finish(error={"code": "VERTEX_INVALID_ARGUMENT", "message": "bad", "hint": "fix"})
    reconcile(ctx)
    assert store.get(record.id).state is State.FAILED


def test_objects_outside_the_root_are_ignored(env):
    ctx = env[0]
    assert on_object_finalized(ctx, BUCKET, "gcloud/tmp/parallel_composite_uploads/x") is None
    assert on_object_finalized(ctx, BUCKET, "models/loose-file.txt") is None
