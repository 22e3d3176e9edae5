"""Placement with fallback on in-memory fakes: the ladder walk, RecommendSpec, spot, NO_CAPACITY,
crashes between attempts. The same paths run against the local stack in
tests/e2e/test_placement_stack.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import DeployError, Recommendation
from modeldrop.service.reconcile import reconcile
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

L4 = {"machine_type": "g2-standard-4", "accelerator_type": "NVIDIA_L4", "accelerator_count": 1}
L4_8 = {**L4, "machine_type": "g2-standard-8"}
CHEAP = "placement: {max_hourly_usd: 1.0}\n"  # g2-standard-4, then g2-standard-8
QUOTA = DeployError(
    "Vertex AI answered RESOURCE_EXHAUSTED: Quota exceeded for "
    "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus",
    "Request more quota.",
    code="VERTEX_QUOTA",
    capacity="no_quota",
)
STOCKOUT = {
    "code": "VERTEX_STOCKOUT",
    "message": "Vertex AI answered RESOURCE_EXHAUSTED: Resources are insufficient in region: a.",
    "hint": "a has no free capacity.",
}


@pytest.fixture
def h2(tmp_path):
    return make_harness(tmp_path, MODELDROP_REGIONS="us-east4,europe-west4")


def validated(h, model, yaml=CHEAP):
    (model / "modeldrop.yaml").write_text(yaml)
    record = upload_all(h, model)[-1]
    assert record.state is State.VALIDATED
    return record


def tried(record):
    return [
        (a["region"], a["machine_spec"]["machine_type"], a["spot"], a["outcome"])
        for a in record.attempts
    ]


def test_the_first_candidate_lands_and_the_record_says_where(h2, model):
    record = on_validated(h2.ctx, validated(h2, model).id)
    first = {"region": "us-east4", "machine_spec": L4, "spot": False, "hourly_usd": 0.8129}
    assert record.placement == {"attempt": 1, **first}
    assert [c["region"] for c in record.candidates] == ["us-east4", "europe-west4"] * 2
    assert record.preflight["source"] == "catalog"  # the fake offers RecommendSpec nowhere
    assert [r["checked"] for r in record.preflight["regions"]] == [False, False]
    assert record.preflight["regions"][0]["code"] == "VERTEX_NOT_FOUND"
    assert record.endpoint is None and record.operation.startswith(
        f"projects/{h2.ctx.settings.project}/locations/us-east4/operations/"
    )
    h2.deployer.finish()
    reconcile(h2.ctx)
    final = h2.store.get(record.id)
    assert final.state is State.DEPLOYED
    assert final.endpoint.endswith(f"locations/us-east4/endpoints/md-{record.id}-1")
    assert tried(final) == [("us-east4", "g2-standard-4", False, "deployed")]


def test_recommend_spec_rules_out_a_region_without_quota_and_keeps_its_base_model(h2, model):
    offer = Recommendation("us-east4", L4, has_quota=False, base_model="qwen/qwen2.5-0.5b")
    elsewhere = Recommendation("europe-west4", L4, has_quota=True)
    h2.deployer.recommendations = {"us-east4": [offer], "europe-west4": [elsewhere]}
    record = on_validated(h2.ctx, validated(h2, model).id)
    assert record.placement["region"] == "europe-west4"
    assert record.preflight["base_model"] == "qwen/qwen2.5-0.5b"
    assert record.preflight["source"] == "recommend_spec"
    dropped = [
        (d["region"], d["machine_spec"]["machine_type"], d["outcome"])
        for d in record.preflight["dropped"]
    ]
    # us-east4 g2-standard-4 has no quota; g2-standard-8 is not mentioned, so it is kept
    assert dropped == [("us-east4", "g2-standard-4", "no_quota")]
    assert [(c["region"], c["machine_spec"]["machine_type"]) for c in record.candidates] == [
        ("europe-west4", "g2-standard-4"),
        ("us-east4", "g2-standard-8"),
        ("europe-west4", "g2-standard-8"),
    ]


def test_a_machine_offered_elsewhere_only_is_unavailable_in_the_region(h2, model):
    h2.deployer.recommendations = {
        "us-east4": [Recommendation("us-east4", L4_8, True)],
        "europe-west4": [Recommendation("europe-west4", L4, True)],
    }
    record = on_validated(h2.ctx, validated(h2, model).id)
    assert {(d["region"], d["outcome"]) for d in record.preflight["dropped"]} == {
        ("us-east4", "unavailable"),
        ("europe-west4", "unavailable"),
    }
    assert record.placement["region"] == "europe-west4"


def test_a_quota_refusal_moves_on_to_the_next_candidate_in_the_same_call(h2, model):
    h2.deployer.failures = [QUOTA]
    record = on_validated(h2.ctx, validated(h2, model).id)
    assert h2.deployer.deploy_calls == [record.id, record.id]
    assert tried(record) == [("us-east4", "g2-standard-4", False, "no_quota")]
    assert record.attempts[0]["code"] == "VERTEX_QUOTA"
    assert record.placement["attempt"] == 2 and record.placement["region"] == "europe-west4"
    assert record.state is State.DEPLOYING and record.operation
    assert list(h2.deployer.endpoints) == [
        f"projects/{h2.ctx.settings.project}/locations/europe-west4/endpoints/md-{record.id}-2"
    ]


def test_a_stockout_deletes_the_attempts_endpoint_then_the_next_one_deploys(h2, model):
    record = on_validated(h2.ctx, validated(h2, model).id)
    first = next(iter(h2.deployer.endpoints))
    h2.deployer.finish(error=STOCKOUT, capacity="stockout")
    h2.queue.messages.clear()
    reconcile(h2.ctx)
    between = h2.store.get(record.id)
    assert between.state is State.DEPLOYING and between.placement is None
    assert tried(between) == [("us-east4", "g2-standard-4", False, "stockout")]
    assert first not in h2.deployer.endpoints and not between.endpoint
    assert h2.queue.messages == [record.id]  # handed to the deploy function
    second = on_validated(h2.ctx, record.id)
    assert second.placement["attempt"] == 2 and second.placement["region"] == "europe-west4"
    h2.deployer.finish()
    reconcile(h2.ctx)
    final = h2.store.get(record.id)
    assert final.state is State.DEPLOYED and final.error is None
    assert [a["outcome"] for a in final.attempts] == ["stockout", "deployed"]
    assert list(h2.deployer.endpoints) == [final.endpoint]


def test_a_permanent_error_stops_at_once(h2, model):
    h2.deployer.failures = [DeployError("denied", "grant it", code="VERTEX_PERMISSION_DENIED")]
    record = on_validated(h2.ctx, validated(h2, model).id)
    assert record.state is State.FAILED and record.error["code"] == "VERTEX_PERMISSION_DENIED"
    assert tried(record) == [("us-east4", "g2-standard-4", False, "error")]
    assert len(h2.deployer.deploy_calls) == 1


def test_every_candidate_exhausted_ends_no_capacity_with_nothing_running(h2, model):
    h2.deployer.failures = [QUOTA, QUOTA]
    record = on_validated(h2.ctx, validated(h2, model).id)  # two refusals, then a deploy
    for _ in range(2):
        h2.deployer.finish(error=STOCKOUT, capacity="stockout")
        reconcile(h2.ctx)
        h2.queue.messages and on_validated(h2.ctx, record.id)
    final = h2.store.get(record.id)
    assert final.state is State.FAILED and final.error["code"] == "NO_CAPACITY"
    assert [a["outcome"] for a in final.attempts] == [
        "no_quota",
        "no_quota",
        "stockout",
        "stockout",
    ]
    hint = final.error["hint"]
    assert (
        "us-east4: request serving quota " in hint and "custom_model_serving_nvidia_l4_gpus" in hint
    )
    assert "no stock of NVIDIA_L4" in hint
    assert "g2-standard-4 with 1 x NVIDIA_L4" in hint  # the cheapest spec that fits
    assert h2.deployer.endpoints == {} and final.endpoint is None
    assert h2.events.states(record.id)[-1] == "FAILED"


def test_recommend_spec_ruling_everything_out_fails_before_any_deploy(h2, model):
    h2.deployer.recommendations = {
        r: [Recommendation(r, L4, False), Recommendation(r, L4_8, False)]
        for r in ("us-east4", "europe-west4")
    }
    record = on_validated(h2.ctx, validated(h2, model).id)
    assert record.state is State.FAILED and record.error["code"] == "NO_CAPACITY"
    assert h2.deployer.deploy_calls == [] and record.attempts == ()
    assert "europe-west4: request serving quota" in record.error["hint"]


def test_nothing_within_the_limits_fails_no_capacity_naming_the_limits(h2, model):
    record = on_validated(h2.ctx, validated(h2, model, "placement: {regions: [asia-east1]}\n").id)
    assert record.state is State.FAILED and record.error["code"] == "NO_CAPACITY"
    assert "MODELDROP_REGIONS" in record.error["hint"] and h2.deployer.deploy_calls == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("prefer", [("us-east4", "g2-standard-4", True, "stockout")]),
        ("only", [("us-east4", "g2-standard-4", True, "stockout")]),
    ],
)
def test_spot_prefer_falls_back_to_on_demand_and_only_does_not(h, model, mode, expected):
    # g2-standard-4 pinned: on Spot the bigger L4 machines are under the cap too (tried next)
    yaml = (
        "machine_spec: {machine_type: g2-standard-4, accelerator_type: NVIDIA_L4, "
        f"accelerator_count: 1}}\nplacement: {{max_hourly_usd: 0.9, spot: {mode}}}\n"
    )
    region = h.ctx.settings.region
    record = on_validated(h.ctx, validated(h, model, yaml).id)
    assert record.placement["spot"] is True
    h.deployer.finish(error=STOCKOUT, capacity="stockout")
    reconcile(h.ctx)
    expected = [(region, *row[1:]) for row in expected]
    if mode == "only":
        final = h.store.get(record.id)
        assert final.state is State.FAILED and final.error["code"] == "NO_CAPACITY"
        assert tried(final) == expected
        return
    second = on_validated(h.ctx, record.id)
    assert (second.placement["spot"], second.placement["machine_spec"]) == (False, L4)
    h.deployer.finish()
    reconcile(h.ctx)
    final = h.store.get(record.id)
    assert final.state is State.DEPLOYED and final.placement["spot"] is False
    assert tried(final) == [*expected, (region, "g2-standard-4", False, "deployed")]
    spot_call, on_demand_call = h.deployer.deployed_placements
    assert (spot_call["spot"], on_demand_call["spot"]) == (True, False)


def test_a_crash_between_attempts_resumes_without_a_second_endpoint(h2, model):
    record = on_validated(h2.ctx, validated(h2, model).id)
    h2.deployer.finish(error=STOCKOUT, capacity="stockout")
    # the poll recorded the failed attempt, then crashed before deleting its endpoint
    h2.deployer.undeploy = lambda endpoint: (_ for _ in ()).throw(ConnectionError("crash"))
    reconcile(h2.ctx)
    stuck = h2.store.get(record.id)
    assert stuck.placement is None and stuck.endpoint.endswith(f"md-{record.id}-1")
    del h2.deployer.undeploy  # the instance attribute goes: the class's works again
    reconcile(h2.ctx)  # clears, hands over
    second = on_validated(h2.ctx, record.id)
    assert second.placement["attempt"] == 2
    # the deploy function then crashed after Deploy but before recording the operation
    stored, version = h2.store.rows[record.id]
    h2.store.rows[record.id] = (
        replace(stored, operation=None, lease_expires_at=h2.clock.now),
        version,
    )
    h2.clock.advance(1)
    reconcile(h2.ctx)  # takes the claim over: the same attempt, the same endpoint id
    again = h2.store.get(record.id)
    assert again.placement["attempt"] == 2 and again.endpoint.endswith(f"md-{record.id}-2")
    assert len(h2.deployer.endpoints) == 1 and len(h2.deployer.deploy_calls) == 3
    h2.deployer.finish()
    reconcile(h2.ctx)
    final = h2.store.get(record.id)
    assert final.state is State.DEPLOYED and [a["attempt"] for a in final.attempts] == [1, 2]


def test_an_endpoint_that_never_goes_away_ends_failed_after_the_deploy_time(h2, model):
    record = on_validated(h2.ctx, validated(h2, model).id)
    h2.deployer.finish(error=STOCKOUT, capacity="stockout")
    h2.deployer.undeploy = lambda endpoint: False  # its model keeps undeploying
    reconcile(h2.ctx)
    h2.clock.advance(3600)
    reconcile(h2.ctx)
    assert h2.store.get(record.id).state is State.DEPLOYING  # still clearing, within 3 h
    h2.clock.advance(3 * 3600)
    reconcile(h2.ctx)
    final = h2.store.get(record.id)
    assert final.state is State.FAILED and final.error["code"] == "ENDPOINT_NOT_DELETED"
    assert "VERTEX_STOCKOUT" in final.error["message"] and "bill" in final.error["hint"]
    assert final.endpoint.endswith(f"md-{record.id}-1")  # DELETE of the record cleans it up
    assert h2.queue.messages == [record.id]  # never handed over for a second attempt
