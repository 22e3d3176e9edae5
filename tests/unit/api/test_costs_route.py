"""Cost estimates on fakes: a record's hourly and accrued cost under a fake clock, and
GET /v1/costs with the totals of the running deployments."""

from __future__ import annotations

import json
from fractions import Fraction

from flask import Flask

from modeldrop.api.app import handle
from modeldrop.domain import cost
from modeldrop.service.deploy import on_validated
from modeldrop.service.reconcile import reconcile
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

app = Flask(__name__)
L4 = Fraction("0.8129")  # g2-standard-4, the cheapest fitting candidate
L4_SPOT = Fraction("0.3241")  # g2-standard-4 on Spot: the catalog's spot_usd_per_hour


def call(h, method, path):
    with app.test_request_context(path, method=method, base_url="http://api.test"):
        from flask import request

        response = handle(request, h.ctx)
        return response.status_code, json.loads(response.get_data() or b"null")


def deployed(h, tmp_path, name, yaml=""):
    folder = write_valid(tmp_path / name)
    if yaml:
        (folder / "modeldrop.yaml").write_text(yaml)
    record = upload_all(h, folder, name=name)[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    reconcile(h.ctx)
    return h.store.get(record.id)


def test_a_record_accrues_its_hourly_cost_while_it_holds_the_machine(tmp_path):
    h = make_harness(tmp_path)
    record = deployed(h, tmp_path, "alpha", "replicas: {min: 2, max: 2}\n")
    assert cost.hourly_usd(record) == 2 * L4  # two replicas
    h.clock.advance(1800)
    assert cost.accrued_usd(record, h.clock()) == L4  # half an hour of two replicas
    status, body = call(h, "DELETE", f"/v1/deployments/{record.id}")
    assert status == 200 and body["state"] == "UNDEPLOYED"
    h.clock.advance(7200)  # nothing accrues once it is undeployed
    undeployed = h.store.get(record.id)
    assert cost.accrued_usd(undeployed, h.clock()) == L4
    _, shown = call(h, "GET", f"/v1/deployments/{record.id}")
    assert (shown["hourly_usd"], shown["accrued_usd"]) == (round(float(2 * L4), 4), 0.8129)


def test_nothing_accrues_before_a_placement_or_after_a_failed_deploy(tmp_path):
    h = make_harness(tmp_path)
    folder = write_valid(tmp_path / "beta")
    validated = upload_all(h, folder, name="beta")[-1]
    assert cost.hourly_usd(validated) is None and cost.accrued_usd(validated, h.clock()) == 0
    on_validated(h.ctx, validated.id)
    h.clock.advance(600)
    h.deployer.finish(error={"code": "VERTEX_INVALID_ARGUMENT", "message": "m", "hint": "h"})
    reconcile(h.ctx)
    failed = h.store.get(validated.id)
    h.clock.advance(36000)
    assert cost.accrued_usd(failed, h.clock()) == L4 * Fraction(600, 3600)  # until FAILED


def test_costs_lists_the_running_deployments_and_their_totals(tmp_path):
    h = make_harness(tmp_path)
    one = deployed(h, tmp_path, "alpha")
    two = deployed(h, tmp_path, "beta", "replicas: {min: 3, max: 3}\n")
    write_valid(tmp_path / "gamma")
    upload_all(h, tmp_path / "gamma", name="gamma")  # VALIDATED: not running yet
    h.clock.advance(3600)
    status, body = call(h, "GET", "/v1/costs")
    assert status == 200 and body["truncated"] is False and "Estimates" in body["estimate"]
    rows = {row["model"]: row for row in body["deployments"]}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"]["id"] == one.id and rows["beta"]["id"] == two.id
    assert rows["beta"]["hourly_usd"] == round(float(3 * L4), 4)
    assert rows["alpha"]["accrued_usd"] == 0.8129 and rows["alpha"]["state"] == "DEPLOYED"
    assert body["total_hourly_usd"] == round(float(4 * L4), 4)
    assert body["total_accrued_usd"] == round(float(4 * L4), 4)


def test_a_spot_placement_costs_the_catalogs_spot_estimate(tmp_path):
    h = make_harness(tmp_path)
    spot = deployed(h, tmp_path, "alpha", "replicas: {min: 2, max: 2}\nplacement: {spot: only}\n")
    assert spot.placement["spot"] is True and spot.placement["hourly_usd"] == 0.3241
    assert cost.hourly_usd(spot) == 2 * L4_SPOT  # not the on-demand 2 x 0.8129
    on_demand = deployed(h, tmp_path, "beta")
    h.clock.advance(1800)
    assert cost.accrued_usd(spot, h.clock()) == L4_SPOT  # half an hour of two replicas
    _, body = call(h, "GET", "/v1/costs")
    rows = {row["model"]: row for row in body["deployments"]}
    assert rows["alpha"]["hourly_usd"] == round(float(2 * L4_SPOT), 4)
    assert rows["beta"]["id"] == on_demand.id and rows["beta"]["hourly_usd"] == 0.8129
    assert body["total_hourly_usd"] == round(float(2 * L4_SPOT + L4), 4)
    assert "Spot placements use the catalog's Spot estimate" in body["estimate"]
