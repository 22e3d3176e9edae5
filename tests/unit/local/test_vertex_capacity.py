"""The emulator's capacity table: validation, quota refusals, stockouts (Spot and injected),
freeing, RecommendSpec."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from modeldrop.local.vertex.capacity import (
    Capacity,
    load_capacity,
    parse_capacity,
    recommend_spec,
    spot_stockout_error,
    stockout_error,
)
from modeldrop.local.vertex.errors import RpcError

L4 = "NVIDIA_L4"


def test_a_good_table_is_kept_and_bad_shapes_say_what_is_wrong(tmp_path: Path) -> None:
    table = {"us-central1": {L4: {"quota": 2, "stock": 1}}, "europe-west4": {}}
    assert parse_capacity(table) == table
    for bad, needle in [
        ([], "must be an object"),
        ({"r": []}, "object of accelerator types"),
        ({"r": {"NVIDIA_L5": {}}}, "unknown accelerator type"),
        ({"r": {L4: {"quota": 1, "gpus": 2}}}, '"quota", "stock" and/or "spot_stock"'),
        ({"r": {L4: {"quota": -1}}}, "whole number >= 0"),
        ({"r": {L4: {"stock": True}}}, "whole number >= 0"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_capacity(bad)
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(table))
    assert load_capacity(path) == table
    path.write_text("{nope")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_capacity(path)


def test_beyond_quota_is_refused_with_the_serving_quota_metric() -> None:
    capacity = Capacity({"us-central1": {L4: {"quota": 2}}})
    capacity.acquire("us-central1", L4, 2)
    with pytest.raises(RpcError) as caught:
        capacity.acquire("us-central1", L4, 1)
    error = caught.value
    assert error.http_status == 429 and error.status == "RESOURCE_EXHAUSTED"
    assert "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus" in error.message
    assert "2 of the quota of 2 are in use" in error.message
    assert capacity.in_use() == {"us-central1": {L4: 2}}  # the refusal holds nothing
    assert capacity.acquire("europe-west4", L4, 8).in_stock  # no entry: unlimited


def test_beyond_stock_is_accepted_but_holds_nothing() -> None:
    capacity = Capacity({"us-central1": {L4: {"quota": 8, "stock": 1}}})
    assert capacity.acquire("us-central1", L4, 1).in_stock
    late = capacity.acquire("us-central1", L4, 1)
    assert not late.in_stock
    capacity.release(late)
    assert capacity.in_use() == {"us-central1": {L4: 1}}
    error = stockout_error("us-central1")
    assert error.to_rpc_status() == {
        "code": 8,
        "message": "Resources are insufficient in region: us-central1.",
    }


def test_spot_stock_is_parsed_like_the_other_limits() -> None:
    table = {"us-central1": {L4: {"quota": 4, "stock": 0, "spot_stock": 2}}}
    assert parse_capacity(table) == table
    assert parse_capacity({"r": {L4: {"spot_stock": 0}}}) == {"r": {L4: {"spot_stock": 0}}}
    for value in (-1, True, "2", 1.5, None):
        with pytest.raises(ValueError, match=r"\['spot_stock'\] must be a whole number >= 0"):
            parse_capacity({"r": {L4: {"spot_stock": value}}})
    with pytest.raises(ValueError, match="spot_stock"):  # the message names the new field
        parse_capacity({"r": {L4: {"spot": 1}}})


def test_spot_deploys_beyond_spot_stock_stock_out_with_the_spot_error() -> None:
    capacity = Capacity({"us-central1": {L4: {"quota": 8, "stock": 4, "spot_stock": 1}}})
    assert capacity.acquire("us-central1", L4, 1, spot=True).in_stock
    assert capacity.check("us-central1", L4, 1, spot=True) == (True, False)
    assert capacity.check("us-central1", L4, 1) == (True, True)  # on demand: stock is 4
    late = capacity.acquire("us-central1", L4, 1, spot=True)
    assert not late.in_stock and late.spot_stockout
    capacity.release(late)
    assert capacity.in_use() == {"us-central1": {L4: 1}}  # the stocked-out deploy holds nothing
    error = late.stockout()
    assert error.http_status == 429 and error.status == "RESOURCE_EXHAUSTED"
    assert error.message == (
        "STOCKOUT: the Spot VMs for NVIDIA_L4 were preempted before the model was ready in "
        "region: us-central1."
    )
    assert error.to_rpc_status() == spot_stockout_error("us-central1", L4).to_rpc_status()
    assert error.to_rpc_status()["code"] == 8
    on_demand = capacity.acquire("us-central1", L4, 3)  # Spot GPUs count against stock: 1 + 3
    assert on_demand.in_stock and not capacity.acquire("us-central1", L4, 1).in_stock
    assert capacity.acquire("us-central1", L4, 1).stockout().message == (
        "Resources are insufficient in region: us-central1."
    )


def test_spot_stock_defaults_to_stock_and_may_exceed_it_and_spot_counts_against_quota() -> None:
    capacity = Capacity(
        {"r": {L4: {"stock": 1}}, "s": {L4: {"quota": 2, "stock": 0, "spot_stock": 2}}}
    )
    assert capacity.acquire("r", L4, 1, spot=True).in_stock
    missing = capacity.acquire("r", L4, 1, spot=True)  # no spot_stock: the stock, 1
    assert not missing.in_stock and "STOCKOUT" in missing.stockout().message
    assert not capacity.acquire("s", L4, 1).in_stock  # no on-demand stock in s
    assert capacity.acquire("s", L4, 2, spot=True).in_stock  # but Spot capacity
    with pytest.raises(RpcError, match="custom_model_serving_nvidia_l4_gpus") as caught:
        capacity.acquire("s", L4, 1, spot=True)
    assert caught.value.http_status == 429
    assert capacity.in_use() == {"r": {L4: 1}, "s": {L4: 2}}
    assert capacity.acquire("elsewhere", L4, 64, spot=True).in_stock  # no entry: unlimited

    # RecommendSpec has no Spot field: it answers for on-demand deploys, from stock
    spot_only = Capacity({"r": {L4: {"stock": 1, "spot_stock": 0}}})
    body = {"gcsUri": "gs://b/m", "checkMachineAvailability": True}
    offered = recommend_spec(spot_only, "r", body, enum_numbers=False)["recommendations"]
    assert "g2-standard-12" in {r["spec"]["machineSpec"]["machineType"] for r in offered}


def test_an_injected_stockout_holds_nothing_but_the_quota_still_comes_first() -> None:
    capacity = Capacity({"us-central1": {L4: {"quota": 1}}})
    grant = capacity.acquire("us-central1", L4, 1, stockout=True)
    assert not grant.in_stock and not grant.spot_stockout
    assert grant.stockout().message == "Resources are insufficient in region: us-central1."
    assert capacity.in_use() == {}
    assert not capacity.acquire("us-central1", L4, 1, spot=True, stockout=True).spot_stockout
    capacity.acquire("us-central1", L4, 1)
    with pytest.raises(RpcError, match="Quota exceeded"):
        capacity.acquire("us-central1", L4, 1, stockout=True)


def test_released_gpus_can_be_used_again_and_a_new_table_keeps_them_in_use() -> None:
    capacity = Capacity({"us-central1": {L4: {"quota": 1, "stock": 1}}})
    grant = capacity.acquire("us-central1", L4, 1)
    assert capacity.check("us-central1", L4, 1) == (False, False)
    capacity.release(grant)
    assert capacity.in_use() == {}
    assert capacity.check("us-central1", L4, 1) == (True, True)
    capacity.acquire("us-central1", L4, 1)
    capacity.replace({"us-central1": {L4: {"quota": 2}}})
    assert capacity.check("us-central1", L4, 1) == (True, True)
    assert capacity.check("us-central1", L4, 2) == (False, True)


def test_concurrent_deploys_never_oversubscribe() -> None:
    capacity = Capacity({"us-central1": {L4: {"quota": 20, "stock": 10}}})
    results: list[str] = []
    barrier = threading.Barrier(40)

    def deploy() -> None:
        barrier.wait()
        try:
            results.append("ok" if capacity.acquire("us-central1", L4, 1).in_stock else "stock")
        except RpcError:
            results.append("quota")

    threads = [threading.Thread(target=deploy) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 10 and results.count("stock") == 30
    assert capacity.in_use() == {"us-central1": {L4: 10}}


def test_recommend_spec_follows_the_table_and_the_flags() -> None:
    from google.cloud import aiplatform_v1beta1 as v1beta1

    capacity = Capacity({"europe-west4": {L4: {"quota": 0}}, "us-east4": {L4: {"stock": 0}}})
    body = {"gcsUri": "gs://b/m", "checkMachineAvailability": True, "checkUserQuota": True}
    answer = recommend_spec(capacity, "us-central1", body, enum_numbers=True)
    response = v1beta1.RecommendSpecResponse.from_json(json.dumps(answer))
    state = v1beta1.RecommendSpecResponse.Recommendation.QuotaState
    seen = {
        (r.region, r.spec.machine_spec.machine_type): r.user_quota_state
        for r in response.recommendations
    }
    assert response.recommendations[0].region == "us-central1"
    assert seen[("us-central1", "g2-standard-12")] == state.QUOTA_STATE_USER_HAS_QUOTA
    assert seen[("europe-west4", "g2-standard-12")] == state.QUOTA_STATE_NO_USER_QUOTA
    assert ("us-east4", "g2-standard-12") not in seen  # out of stock
    assert seen[("us-east4", "a2-highgpu-1g")] == state.QUOTA_STATE_USER_HAS_QUOTA
    assert response.base_model == ""
    spec = response.recommendations[0].spec.machine_spec
    assert spec.accelerator_type.name and spec.accelerator_count >= 1
    assert isinstance(answer["recommendations"][0]["userQuotaState"], int)

    names = recommend_spec(capacity, "us-central1", {"gcsUri": "gs://b/m"}, enum_numbers=False)
    regions = {r["region"] for r in names["recommendations"]}
    assert regions == {"us-central1", "europe-west4", "us-east4"}  # no availability filter
    assert all("userQuotaState" not in r for r in names["recommendations"])  # UNSPECIFIED
    assert names["recommendations"][0]["spec"]["machineSpec"]["acceleratorType"] == L4


def test_recommend_spec_refuses_bad_requests() -> None:
    for body, needle in [({}, "gcs_uri is required"), ({"nope": 1}, "Invalid JSON payload")]:
        with pytest.raises(RpcError, match=needle) as caught:
            recommend_spec(Capacity(), "us-central1", body, enum_numbers=True)
        assert caught.value.http_status == 400


def test_a_bad_capacity_file_stops_the_emulator_before_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modeldrop.local.vertex.__main__ import main

    path = tmp_path / "capacity.json"
    path.write_text('{"us-central1": {"NVIDIA_L4": {"quota": "two"}}}')
    assert main(["--capacity", str(path)]) == 2
    assert "whole number >= 0" in capsys.readouterr().err
    assert main(["--capacity", str(tmp_path / "missing.json")]) == 2
