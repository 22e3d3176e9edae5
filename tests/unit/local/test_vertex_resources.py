"""The local Vertex AI emulator's registry: ids, conflicts, deploy results, deletes."""

from __future__ import annotations

import pytest

from modeldrop.local.vertex.checks import check_deploy_request
from modeldrop.local.vertex.errors import RpcError, invalid
from modeldrop.local.vertex.resources import TYPE_PREFIX, Registry

BODY = {
    "customModel": {"gcsUri": "gs://bucket/models/tiny"},
    "modelConfig": {"modelUserId": "tiny-model"},
    "endpointConfig": {"endpointUserId": "tiny-endpoint"},
}


def spec(**changes: dict) -> object:
    return check_deploy_request({**BODY, **changes}, "p", "us-central1")


def test_deploy_creates_endpoint_then_deployed_model() -> None:
    registry = Registry(dns="127.0.0.1:9")
    deploy_spec = spec()
    start = registry.start_deploy(deploy_spec)
    assert start.endpoint == "projects/p/locations/us-central1/endpoints/tiny-endpoint"
    assert start.model == "projects/p/locations/us-central1/models/tiny-model"
    operation = registry.operation(start.operation.name)
    assert operation["done"] is False
    assert operation["metadata"]["@type"] == TYPE_PREFIX + "DeployOperationMetadata"
    endpoint = registry.endpoint(start.endpoint)
    assert endpoint["deployedModels"] == [] and endpoint["labels"] == {}
    assert endpoint["dedicatedEndpointDns"] == "127.0.0.1:9"
    with pytest.raises(RpcError, match="no deployed model"):
        registry.deployed(start.endpoint)
    with pytest.raises(RpcError, match="deploy in progress"):
        registry.delete_endpoint(start.endpoint)

    deployed_id = registry.finish_deploy(start, deploy_spec)
    operation = registry.operation(start.operation.name)
    assert operation["done"] is True
    assert operation["response"] == {
        "@type": TYPE_PREFIX + "DeployResponse",
        "endpoint": start.endpoint,
        "model": start.model,
    }
    deployed = registry.endpoint(start.endpoint)["deployedModels"][0]
    assert deployed["id"] == deployed_id and deployed["id"].isdigit()
    assert deployed["dedicatedResources"]["machineSpec"]["acceleratorType"] == "NVIDIA_L4"
    assert deployed["status"]["availableReplicaCount"] == 1
    assert registry.deployed(start.endpoint)[0] == deployed_id

    with pytest.raises(RpcError) as info:
        registry.delete_endpoint(start.endpoint)
    assert info.value.status == "FAILED_PRECONDITION"
    registry.remove_deployed_model(start.endpoint, deployed_id)
    registry.delete_endpoint(start.endpoint)
    with pytest.raises(RpcError) as info:
        registry.endpoint(start.endpoint)
    assert info.value.http_status == 404


def test_same_user_ids_conflict() -> None:
    registry = Registry(dns="h:1")
    registry.start_deploy(spec())
    with pytest.raises(RpcError) as info:
        registry.start_deploy(spec())
    assert info.value.http_status == 409
    assert "projects/p/locations/us-central1/endpoints/tiny-endpoint" in info.value.message
    with pytest.raises(RpcError, match=r"Model .* already exists"):
        registry.start_deploy(spec(endpointConfig={"endpointUserId": "other"}))


def test_generated_ids_are_numeric() -> None:
    registry = Registry(dns="h:1")
    start = registry.start_deploy(
        check_deploy_request({"customModel": BODY["customModel"]}, "p", "l1")
    )
    assert start.endpoint.rsplit("/", 1)[1].isdigit()
    assert start.model_id.startswith("mg-custom-")


def test_failed_deploy_keeps_endpoint_without_model() -> None:
    registry = Registry(dns="h:1")
    start = registry.start_deploy(spec())
    registry.fail_deploy(start, invalid("engine said no"))
    operation = registry.operation(start.operation.name)
    assert operation["done"] and operation["error"] == {"code": 3, "message": "engine said no"}
    assert registry.endpoint(start.endpoint)["deployedModels"] == []
    registry.delete_endpoint(start.endpoint)


def test_unknown_things_are_404() -> None:
    registry = Registry(dns="h:1")
    for call in (
        lambda: registry.operation("projects/p/locations/l/operations/1"),
        lambda: registry.endpoint("projects/p/locations/l/endpoints/x"),
        lambda: registry.model("projects/p/locations/l/models/x"),
    ):
        with pytest.raises(RpcError) as info:
            call()
        assert info.value.http_status == 404
