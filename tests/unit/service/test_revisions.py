"""One serving revision per model name, on fakes: promotion, retirement after the grace period,
a bad revision that never touches the serving one, rollback, idle undeploy, redeploy, and the
cost of every deploy round."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from modeldrop.api.context import POINTER_SECONDS
from modeldrop.api.usage import record_use
from modeldrop.domain import cost
from modeldrop.domain.deployment import ActionRefused, State
from modeldrop.domain.revisions import MIN_GRACE_SECONDS
from modeldrop.service import revisions
from modeldrop.service.deploy import on_validated
from modeldrop.service.lifecycle import start_delete
from modeldrop.service.reconcile import reconcile
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

NAME = "alpha"


def deployed(h, model):
    """Upload `model` as NAME (a new revision each time) and take it to DEPLOYED."""
    record = upload_all(h, model, name=NAME)[-1]
    assert record.state is State.VALIDATED
    started = on_validated(h.ctx, record.id)
    assert started.state is State.DEPLOYING
    h.deployer.finish()
    reconcile(h.ctx)
    result = h.store.get(record.id)
    assert result.state is State.DEPLOYED and not result.promotion_pending
    return result


def serving(h):
    pointer = h.store.get_pointer(NAME)
    return pointer.serving if pointer else None


def notes(h, record_id):
    return [t.note for t in h.store.get(record_id).history]


@pytest.fixture
def model(tmp_path):
    return write_valid(tmp_path / "source")


def test_a_new_revision_serves_and_the_old_one_is_retired_after_the_grace(tmp_path, model):
    h = make_harness(tmp_path)  # MODELDROP_RETIRE_AFTER_SECONDS: 3600 by default
    v1 = deployed(h, model)
    assert serving(h) == v1.id and h.store.get_pointer(NAME).previous is None
    h.clock.advance(60)
    v2 = deployed(h, model)
    assert v2.revision > v1.revision
    assert (serving(h), h.store.get_pointer(NAME).previous) == (v2.id, v1.id)

    h.clock.advance(3599)
    reconcile(h.ctx)
    assert h.store.get(v1.id).state is State.DEPLOYED  # still in its grace: rollback possible
    h.clock.advance(1)
    reconcile(h.ctx)
    assert h.store.get(v1.id).state is State.UNDEPLOYED
    assert notes(h, v1.id)[-2:] == [
        f"retired: replaced by {v2.id}",
        f"endpoint deleted (retired: replaced by {v2.id})",
    ]
    assert v1.endpoint not in h.deployer.endpoints and v2.endpoint in h.deployer.endpoints
    assert h.store.get(v2.id).state is State.DEPLOYED and serving(h) == v2.id


def test_with_no_grace_the_replaced_revision_goes_after_the_minimum(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_RETIRE_AFTER_SECONDS="0")
    v1 = deployed(h, model)
    v2 = deployed(h, model)
    reconcile(h.ctx)  # it answers a moment longer than any api instance reuses the pointer
    assert h.store.get(v1.id).state is State.DEPLOYED
    assert MIN_GRACE_SECONDS > POINTER_SECONDS
    h.clock.advance(MIN_GRACE_SECONDS)
    reconcile(h.ctx)
    assert h.store.get(v1.id).state is State.UNDEPLOYED
    assert list(h.deployer.endpoints) == [v2.endpoint]


def test_a_rejected_or_failed_revision_never_touches_the_serving_one(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_RETIRE_AFTER_SECONDS="0")
    v1 = deployed(h, model)
    (model / "config.json").write_text("{not json")  # v1 stays: nothing replaced it
    rejected = upload_all(h, model, name=NAME)[-1]
    assert rejected.state is State.REJECTED

    write_valid(model)
    v3 = upload_all(h, model, name=NAME)[-1]
    on_validated(h.ctx, v3.id)
    h.deployer.finish()
    h.endpoints.failure = RuntimeError("the model server crashed")  # its smoke test fails
    for _ in range(3):
        reconcile(h.ctx)
    assert h.store.get(v3.id).state is State.FAILED
    assert h.store.get(v3.id).error["code"] == "SMOKE_TEST_FAILED"
    assert serving(h) == v1.id and h.store.get(v1.id).state is State.DEPLOYED


def test_an_older_revision_deployed_late_does_not_take_over(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_RETIRE_AFTER_SECONDS="0")
    old = upload_all(h, model, name="alpha")[-1]
    new = deployed(h, model)  # the same folder again: supersedes nothing that deploys yet
    assert h.store.get(old.id).state is State.SUPERSEDED and serving(h) == new.id
    # an older revision of the same name from another folder, DEPLOYED after the newer one
    other = replace(new, id="alpha-older", folder="models/other/alpha", revision=1, etag=None)
    h.store.create(replace(other, promotion_pending=True))
    revisions.tend(h.ctx, h.store.get("alpha-older"))
    assert serving(h) == new.id
    assert h.store.get("alpha-older").promotion_pending is False
    h.clock.advance(MIN_GRACE_SECONDS)
    reconcile(h.ctx)  # not serving, the minimum grace had: retired
    assert h.store.get("alpha-older").state is State.UNDEPLOYED


def test_a_promotion_interrupted_by_a_crash_is_finished_by_reconcile(tmp_path, model, monkeypatch):
    h = make_harness(tmp_path)
    v1 = deployed(h, model)
    record = upload_all(h, model, name=NAME)[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    put = h.store.put_pointer
    monkeypatch.setattr(h.store, "put_pointer", lambda p: (_ for _ in ()).throw(OSError("down")))
    reconcile(h.ctx)
    crashed = h.store.get(record.id)
    assert crashed.state is State.DEPLOYED and crashed.promotion_pending
    assert serving(h) == v1.id  # the old revision answers meanwhile
    monkeypatch.setattr(h.store, "put_pointer", put)
    reconcile(h.ctx)
    assert serving(h) == record.id and not h.store.get(record.id).promotion_pending


def test_two_revisions_promoted_at_once_leave_the_newest_serving(tmp_path, model, monkeypatch):
    h = make_harness(tmp_path)
    v1, v2 = deployed(h, model), deployed(h, model)
    v3 = deployed(h, model)
    # v2's promotion reads the pointer, then v3's promotion writes it first
    h.store.put_pointer(replace(h.store.get_pointer(NAME), serving=v1.id, previous=None))
    racing = [replace(h.store.get(v3.id), promotion_pending=True)]
    get_pointer = h.store.get_pointer

    def read_then_lose(name):
        seen = get_pointer(name)
        if racing:
            revisions.promote(h.ctx, h.store.replace(racing.pop()))
        return seen

    monkeypatch.setattr(h.store, "get_pointer", read_then_lose)
    revisions.promote(h.ctx, h.store.replace(replace(h.store.get(v2.id), promotion_pending=True)))
    monkeypatch.setattr(h.store, "get_pointer", get_pointer)
    pointer = h.store.get_pointer(NAME)
    assert (pointer.serving, pointer.previous) == (v3.id, v1.id)


def test_rollback_within_the_grace_then_the_rolled_back_revision_is_retired(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_RETIRE_AFTER_SECONDS="600")
    v1 = deployed(h, model)
    with pytest.raises(ActionRefused) as none:
        revisions.rollback(h.ctx, NAME)
    assert none.value.code == "NO_PREVIOUS_REVISION"
    v2 = deployed(h, model)
    h.clock.advance(300)
    pointer = revisions.rollback(h.ctx, NAME)
    assert (pointer.serving, pointer.previous) == (v1.id, v2.id)
    h.clock.advance(599)
    reconcile(h.ctx)
    assert h.store.get(v2.id).state is State.DEPLOYED
    h.clock.advance(1)
    reconcile(h.ctx)
    assert h.store.get(v2.id).state is State.UNDEPLOYED
    assert h.store.get(v1.id).state is State.DEPLOYED
    with pytest.raises(ActionRefused) as gone:
        revisions.rollback(h.ctx, NAME)
    assert gone.value.code == "PREVIOUS_NOT_DEPLOYED" and ":redeploy" in gone.value.hint


def test_idle_undeploy_counts_from_the_last_use(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_IDLE_UNDEPLOY_SECONDS="600")
    v1 = deployed(h, model)
    h.clock.advance(500)
    record_use(h.ctx, v1)
    assert h.store.get(v1.id).last_used_at == h.clock()
    h.clock.advance(599)
    reconcile(h.ctx)
    assert h.store.get(v1.id).state is State.DEPLOYED
    h.clock.advance(1)
    reconcile(h.ctx)
    idle = h.store.get(v1.id)
    assert idle.state is State.UNDEPLOYED and notes(h, v1.id)[-2] == "idle: no request for 600 s"
    assert serving(h) == v1.id  # the name still points at it: a redeploy brings it back


def test_last_use_is_written_at_most_once_per_interval(tmp_path, model):
    h = make_harness(tmp_path)
    v1 = deployed(h, model)
    writes = []
    replace_record = h.store.replace
    h.store.replace = lambda d: writes.append(d.last_used_at) or replace_record(d)
    for _ in range(50):
        record_use(h.ctx, v1)
    assert len(writes) == 1  # the api instance's throttle: one write per minute


def test_the_folders_idle_limit_wins(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_IDLE_UNDEPLOY_SECONDS="600")
    v1 = deployed(h, model)
    h.store.replace(replace(v1, overrides={**v1.overrides, "idle_undeploy_after_seconds": 0}))
    h.clock.advance(10_000)
    reconcile(h.ctx)
    assert h.store.get(v1.id).state is State.DEPLOYED  # 0 in modeldrop.yaml: never


def test_redeploy_an_idle_revision_serves_again_with_fresh_ids(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_IDLE_UNDEPLOY_SECONDS="600")
    v1 = deployed(h, model)
    with pytest.raises(ActionRefused) as busy:
        revisions.redeploy(h.ctx, v1)
    assert busy.value.code == "NOT_UNDEPLOYED"
    h.clock.advance(600)
    reconcile(h.ctx)
    again = revisions.redeploy(h.ctx, h.store.get(v1.id))
    assert again.state is State.VALIDATED and again.deploy_round == 2
    assert h.queue.messages[-1] == v1.id
    on_validated(h.ctx, v1.id)
    h.deployer.finish()
    h.clock.advance(60)
    reconcile(h.ctx)
    back = h.store.get(v1.id)
    assert back.state is State.DEPLOYED and serving(h) == v1.id
    assert back.vertex_id.endswith("-r2-1") and back.vertex_id != v1.vertex_id
    # the cost counts both rounds: 600 s, then 60 s so far
    spans = cost.held(back, h.clock())
    assert len(spans) == 2
    seconds = sum((end - start).total_seconds() for start, end in spans)
    assert cost.accrued_usd(back, h.clock()) == cost.hourly_usd(back) * Fraction(
        round(seconds), 3600
    )


def test_redeploy_refuses_a_changed_folder(tmp_path, model):
    h = make_harness(tmp_path)
    v1 = deployed(h, model)
    start_delete(h.ctx, h.store.get(v1.id))
    (tmp_path / "buckets" / h.ctx.settings.bucket / v1.folder / "extra.txt").write_text("new")
    with pytest.raises(ActionRefused) as changed:
        revisions.redeploy(h.ctx, h.store.get(v1.id))
    assert changed.value.code == "FOLDER_CHANGED" and v1.gcs_uri in changed.value.message
    assert h.store.get(v1.id).state is State.UNDEPLOYED
