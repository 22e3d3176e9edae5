"""Fault mode of the local Vertex AI emulator: parsing, ordering, route filters, messages."""

from __future__ import annotations

import pytest

from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.faults import (
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


@pytest.mark.parametrize("spec", ["503x", "abc", "503x0", "418", "503@nowhere", "503x2@"])
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
    assert serving_quota(None) == "custom_model_serving_nvidia_l4_gpus"


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
