"""Fault mode of the local Vertex AI emulator: parsing, ordering, route filters, messages, the
stockout fault, and the serving quota metric names from the catalog."""

from __future__ import annotations

import pytest

from modeldrop.catalog import machine_catalog, serving_quota_metric
from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.faults import (
    STOCKOUT,
    Fault,
    FaultInjector,
    fault_error,
    faults_from_json,
    make_fault,
    parse_faults,
    serving_quota,
)


def test_parse_counts_and_routes() -> None:
    assert parse_faults("503x2, 429x1,403@deploy+undeploy,500") == [
        Fault(503, 2),
        Fault(429, 1),
        Fault(403, 1, ("deploy", "undeploy")),
        Fault(500, 1),
    ]
    assert parse_faults("") == []


@pytest.mark.parametrize(
    "spec", ["503x", "abc", "503x0", "418", "503@nowhere", "503x2@", "STOCKOUT", "stockoutx0"]
)
def test_bad_specs_say_how_to_write_them(spec: str) -> None:
    with pytest.raises(ValueError, match=r"fault|STATUS"):
        parse_faults(spec)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((True,), "not supported"),
        ((503, 0), "count"),
        ((503, 1, [1]), "list of route names"),
        ((503, 1, ["bogus"]), "unknown fault routes"),
    ],
)
def test_make_fault_checks_json_values(args: tuple, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        make_fault(*args)


def test_faults_fire_in_order_then_stop() -> None:
    injector = FaultInjector(parse_faults("503x2,429x1"))
    assert [injector.take("endpoints") for _ in range(4)] == [503, 503, 429, None]
    assert injector.fired == 3 and injector.pending() == []


def test_route_filters_and_query_only_when_named() -> None:
    injector = FaultInjector([Fault(403, 1, ("deploy",)), Fault(503, 1)])
    assert injector.take("query") is None  # control-plane faults leave queries alone
    assert injector.take("operations") == 503  # the deploy-only fault waits
    assert injector.take("deploy") == 403
    injector.add([make_fault(500, 1, ["query"])])
    assert injector.take("endpoints") is None
    assert injector.take("query") == 500
    injector.add([Fault(503, 5)])
    injector.clear()
    assert injector.take("deploy") is None


def test_messages_name_the_permission_and_the_quota() -> None:
    forbidden = fault_error(403, "deploy", "projects/p/locations/l")
    assert forbidden.http_status == 403 and forbidden.status == "PERMISSION_DENIED"
    assert "aiplatform.endpoints.deploy" in forbidden.message
    assert forbidden.details[0]["reason"] == "IAM_PERMISSION_DENIED"
    quota = fault_error(429, "deploy", "projects/p/locations/l", "NVIDIA_H100_80GB")
    assert quota.status == "RESOURCE_EXHAUSTED"
    assert "aiplatform.googleapis.com/custom_model_serving_nvidia_h100_gpus" in quota.message
    assert fault_error(429, "deploy", "x").message.count("custom_model_serving_nvidia_l4_gpus")
    assert fault_error(503, "operations", "x").to_json()["error"] == {
        "code": 503,
        "message": "The service is currently unavailable. (injected fault)",
        "status": "UNAVAILABLE",
    }
    assert fault_error(504, "query", "x").status == "DEADLINE_EXCEEDED"
    # a deploy body naming no accelerator gets the default machine (an L4)
    assert serving_quota(None) == "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus"


def test_calls_are_counted_and_faulted_with_the_real_wording() -> None:
    injector = FaultInjector(faults_from_json({"status": 429, "routes": ["deploy"]}))
    with pytest.raises(RpcError, match="custom_model_serving_nvidia_h100_gpus"):
        injector.call("deploy", "projects/p/locations/l", "NVIDIA_H100_80GB")
    injector.call("deploy", "projects/p/locations/l")  # spent: the real answer again
    injector.call("endpoints", "projects/p/locations/l/endpoints/e")
    assert injector.report() == {
        "calls": {"deploy": 2, "endpoints": 1},
        "deploy_calls": 2,
        "faults": [],
        "faults_fired": 1,
    }
    assert faults_from_json({"faults": [{"status": 503, "count": 2}]}) == [Fault(503, 2)]
    for bad in ([1], {"status": 418}):
        with pytest.raises(RpcError, match=r"emulator/faults|not supported"):
            faults_from_json(bad)


def test_stockout_faults_parse_from_the_spec_and_json_for_the_deploy_route_only() -> None:
    deploy_only = ("deploy",)
    assert parse_faults("stockoutx2,503,stockout@deploy") == [
        Fault(STOCKOUT, 2, deploy_only),
        Fault(503, 1),
        Fault(STOCKOUT, 1, deploy_only),
    ]
    assert faults_from_json({"status": "stockout", "count": 3}) == [Fault(STOCKOUT, 3, deploy_only)]
    assert faults_from_json({"faults": [{"status": "stockout", "routes": ["deploy"]}]}) == [
        Fault(STOCKOUT, 1, deploy_only)
    ]
    assert make_fault(STOCKOUT).as_dict() == {
        "status": "stockout",
        "count": 1,
        "routes": ["deploy"],
    }
    with pytest.raises(ValueError, match=r"deploy route only, not \['undeploy'\]"):
        parse_faults("stockout@deploy+undeploy")
    with pytest.raises(ValueError, match="deploy route only"):
        make_fault(STOCKOUT, 1, "query")
    with pytest.raises(RpcError, match="deploy route only") as caught:
        faults_from_json({"status": "stockout", "routes": ["operations"]})
    assert caught.value.http_status == 400
    with pytest.raises(RpcError, match="count"):
        faults_from_json({"status": "stockout", "count": 0})


def test_a_stockout_fault_is_returned_on_the_next_deploy_not_raised() -> None:
    injector = FaultInjector(parse_faults("stockout,503@deploy"))
    assert injector.call("operations", "projects/p/locations/l/operations/1") is None  # waits
    assert injector.call("endpoints", "projects/p/locations/l/endpoints/e") is None
    assert injector.pending()[0] == {"status": "stockout", "count": 1, "routes": ["deploy"]}
    assert injector.call("deploy", "projects/p/locations/l", "NVIDIA_L4") == STOCKOUT
    with pytest.raises(RpcError) as caught:  # the faults behind it fire in order as before
        injector.call("deploy", "projects/p/locations/l")
    assert caught.value.http_status == 503
    assert injector.call("deploy", "projects/p/locations/l") is None  # spent
    report = injector.report()
    assert report["faults"] == [] and report["faults_fired"] == 2
    assert report["calls"] == {"operations": 1, "endpoints": 1, "deploy": 3}


def test_serving_quota_metrics_come_from_the_catalog() -> None:
    accelerators = machine_catalog()["accelerators"]
    assert {name: entry["serving_quota_metric"] for name, entry in accelerators.items()} == {
        name: f"aiplatform.googleapis.com/custom_model_serving_{gpu}_gpus"
        for name, gpu in {
            "NVIDIA_L4": "nvidia_l4",
            "NVIDIA_TESLA_A100": "nvidia_a100",
            "NVIDIA_A100_80GB": "nvidia_a100_80gb",
            "NVIDIA_H100_80GB": "nvidia_h100",
            "NVIDIA_H100_MEGA_80GB": "nvidia_h100_mega",
            "NVIDIA_H200_141GB": "nvidia_h200",
            "NVIDIA_B200": "nvidia_b200",
        }.items()
    }
    for machine in machine_catalog()["machines"]:  # every machine's GPU has its metric
        assert machine["accelerator_type"] in accelerators
    assert serving_quota_metric("NVIDIA_H200_141GB") == (
        "aiplatform.googleapis.com/custom_model_serving_nvidia_h200_gpus"
    )
    # not in the catalog: the quota console's pattern on the lowercased name
    assert serving_quota_metric("NVIDIA_TESLA_T4") == (
        "aiplatform.googleapis.com/custom_model_serving_nvidia_tesla_t4_gpus"
    )
    assert serving_quota("NVIDIA_A100_80GB") == serving_quota_metric("NVIDIA_A100_80GB")
    quota = fault_error(429, "deploy", "projects/p/locations/l", "NVIDIA_TESLA_T4")
    assert quota.details[0]["metadata"]["quota"] == serving_quota_metric("NVIDIA_TESLA_T4")
