"""The budget cap (MODELDROP_MAX_HOURLY_USD) on fakes: a deploy that would go over waits
VALIDATED with `blocked`, is announced once, and deploys by itself when the budget frees."""

from __future__ import annotations

from dataclasses import replace

import pytest

from modeldrop.adapters.pubsub_events import to_event
from modeldrop.api.views import status_body
from modeldrop.domain.deployment import State
from modeldrop.service import budget
from modeldrop.service.deploy import claim_and_deploy, on_validated
from modeldrop.service.lifecycle import start_delete
from modeldrop.service.reconcile import reconcile
from modeldrop.settings import SettingError, Settings
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

RETRY_AFTER = 1.5  # leases: the most a blocked record waits before it is handed over again


def validated(h, tmp_path, name):
    record = upload_all(h, write_valid(tmp_path / name), name=name)[-1]
    assert record.state is State.VALIDATED
    return record


def test_a_second_model_waits_for_the_budget_then_deploys_by_itself(tmp_path):
    h = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="1.50")  # one g2-standard-4 ($0.81/h)
    first = on_validated(h.ctx, validated(h, tmp_path, "alpha").id)
    h.deployer.finish()
    reconcile(h.ctx)
    assert h.store.get(first.id).state is State.DEPLOYED

    second = validated(h, tmp_path, "beta")
    blocked = on_validated(h.ctx, second.id)
    assert blocked.state is State.VALIDATED and h.deployer.deploy_calls == [first.id]
    assert blocked.blocked["code"] == "BUDGET_EXCEEDED"
    assert (blocked.blocked["running_hourly_usd"], blocked.blocked["cap"]) == (0.8129, 1.5)
    assert "MODELDROP_MAX_HOURLY_USD" in blocked.blocked["message"]
    assert to_event(blocked, "s")["type"] == "dev.modeldrop.deployment.blocked"
    announced = h.events.states(second.id)
    assert announced == ["DETECTED", "VALIDATING", "VALIDATED", "VALIDATED"]

    h.clock.advance(RETRY_AFTER * h.ctx.settings.lease_seconds + 1)
    reconcile(h.ctx)  # re-queued; still over the budget: not announced again
    on_validated(h.ctx, h.queue.messages[-1])
    assert h.events.states(second.id) == announced and len(h.deployer.deploy_calls) == 1

    delete = h.ctx.store.get(first.id)
    assert start_delete(h.ctx, delete).state is State.UNDEPLOYED
    h.clock.advance(RETRY_AFTER * h.ctx.settings.lease_seconds + 1)
    reconcile(h.ctx)
    deploying = on_validated(h.ctx, h.queue.messages[-1])
    assert deploying.state is State.DEPLOYING and deploying.blocked is None
    assert h.deployer.deploy_calls == [first.id, second.id]
    # every notification's number is on the record: the block took 4, DEPLOYING is 5
    assert blocked.blocked["event"] == 4 == blocked.event_sequence
    assert to_event(blocked, "s")["id"] == f"{second.id}-4"
    assert (
        [t.event for t in deploying.history]
        == [1, 2, 3, 5]
        == [t.event for t in h.store.get(second.id).history]
    )


def test_no_cap_by_default_and_a_bad_cap_is_refused(tmp_path):
    h = make_harness(tmp_path)
    assert h.ctx.settings.max_hourly_usd is None
    for name in ("alpha", "beta"):
        assert on_validated(h.ctx, validated(h, tmp_path, name).id).state is State.DEPLOYING
    for bad in ("-1", "0", "1e9", "ten", "1.23456"):
        with pytest.raises(SettingError, match="MODELDROP_MAX_HOURLY_USD"):
            Settings.from_env({"MODELDROP_MAX_HOURLY_USD": bad})


def test_a_blocked_deployment_is_cancelled_by_delete(tmp_path):
    h = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="0.50")  # below every machine
    blocked = on_validated(h.ctx, validated(h, tmp_path, "alpha").id)
    assert blocked.blocked and blocked.blocked["needed_hourly_usd"] == 0.8129
    assert start_delete(h.ctx, h.store.get(blocked.id)).state is State.SUPERSEDED
    assert h.deployer.deploy_calls == []


def test_a_new_revision_is_not_blocked_by_the_one_it_replaces(tmp_path):
    h = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="1.00")  # room for one L4 machine
    model = write_valid(tmp_path / "alpha")
    first = upload_all(h, model, name="alpha")[-1]
    on_validated(h.ctx, first.id)
    h.deployer.finish()
    reconcile(h.ctx)
    assert h.store.get(first.id).state is State.DEPLOYED
    second = upload_all(h, model, name="alpha")[-1]  # a new revision of the same name
    assert on_validated(h.ctx, second.id).state is State.DEPLOYING
    other = validated(h, tmp_path, "beta")  # another model still counts both
    assert on_validated(h.ctx, other.id).blocked["code"] == "BUDGET_EXCEEDED"


def test_an_admitted_deployment_holds_its_share_until_it_is_claimed(tmp_path):
    """The window between one admission's check and its claim: a second admission meanwhile
    counts the first one's hold and waits; the hold ends with the claim's transition."""
    h = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="1.00")  # room for one L4 machine
    alpha, beta = validated(h, tmp_path, "alpha"), validated(h, tmp_path, "beta")
    admitted = budget.admit(h.ctx, alpha)
    assert admitted.admitted and admitted.record.budget_hold == "8129/10000"
    assert h.store.get(alpha.id).state is State.VALIDATED  # held, not claimed yet

    waiting = budget.admit(h.ctx, beta)
    assert not waiting.admitted and waiting.record.blocked["running_hourly_usd"] == 0.8129
    assert waiting.record.budget_hold is None

    claimed = claim_and_deploy(h.ctx, admitted.record)
    assert claimed.state is State.DEPLOYING and claimed.budget_hold is None
    assert h.deployer.deploy_calls == [alpha.id]
    assert "budget_hold" not in status_body(claimed, "http://api", h.clock())


def test_two_admissions_at_once_never_both_pass(tmp_path):
    """Both holds written before either check: neither passes (they try again when their
    leases lapse, and then one does); a hold whose lease lapsed no longer counts."""
    h = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="1.00")
    alpha, beta = validated(h, tmp_path, "alpha"), validated(h, tmp_path, "beta")
    held = [budget.hold(h.ctx, alpha), budget.hold(h.ctx, beta)]
    assert all(budget.over_budget(h.ctx, record) for record in held)

    h.clock.advance(RETRY_AFTER * h.ctx.settings.lease_seconds + 1)  # both workers died
    assert budget.over_budget(h.ctx, h.store.get(alpha.id)) is None
    reconcile(h.ctx)  # hands both over again; the first one admitted blocks the second
    for message in h.queue.messages[-2:]:
        on_validated(h.ctx, message)
    states = {h.store.get(i).state for i in (alpha.id, beta.id)}
    assert states == {State.DEPLOYING, State.VALIDATED} and len(h.deployer.deploy_calls) == 1


def test_an_unreadable_hold_counts_over_any_cap_until_its_lease_lapses(tmp_path):
    h = make_harness(tmp_path, MODELDROP_MAX_HOURLY_USD="1000")
    alpha, beta = validated(h, tmp_path, "alpha"), validated(h, tmp_path, "beta")
    held = budget.hold(h.ctx, alpha)
    h.store.replace(replace(held, budget_hold="1/0 or worse" * 10))  # a hand-edited document
    assert budget.over_budget(h.ctx, beta)["code"] == "BUDGET_EXCEEDED"
    h.clock.advance(h.ctx.settings.lease_seconds + 1)
    assert budget.over_budget(h.ctx, beta) is None
