"""DeployRequest and UpdateEndpoint checks of the local Vertex AI emulator (no I/O)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modeldrop.local.vertex.checks import (
    DEFAULT_MACHINE,
    check_deploy_request,
    check_endpoint_update,
    check_labels,
)
from modeldrop.local.vertex.errors import RpcError
from tests.fixtures.vertex_requests import sdk_deploy_body

PROJECT, LOCATION = "demo-project", "us-central1"
# Exactly what ModelGardenServiceClient(transport="rest").deploy sends (see the integration test).
SDK_BODY = sdk_deploy_body("gs://bucket/models/tiny", "tiny-endpoint", "tiny-model", 2)


def with_change(path: str, value: Any) -> dict[str, Any]:
    """SDK_BODY with the dotted `path` set to `value` (None deletes it)."""
    body = copy.deepcopy(SDK_BODY)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return body


def rejected(body: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        check_deploy_request(body, PROJECT, LOCATION)
    return info.value


def test_sdk_body_is_accepted_with_names_resolved() -> None:
    spec = check_deploy_request(SDK_BODY, PROJECT, LOCATION)
    assert spec.gcs_uri == "gs://bucket/models/tiny"
    assert spec.parent == "projects/demo-project/locations/us-central1"
    assert (spec.machine.machine_type, spec.machine.accelerator_type) == (
        "g2-standard-12",
        "NVIDIA_L4",
    )
    assert (spec.min_replicas, spec.max_replicas) == (1, 2)
    assert (spec.endpoint_user_id, spec.model_user_id) == ("tiny-endpoint", "tiny-model")
    assert spec.dedicated_endpoint and spec.psc is None


def test_seed_curl_body_snake_case_and_enum_name_is_accepted() -> None:
    body = {
        "custom_model": {"gcs_uri": "gs://bucket/models/tiny/"},
        "destination": f"projects/{PROJECT}/locations/{LOCATION}",
        "model_config": {"model_user_id": "my-model"},
        "endpoint_config": {
            "endpoint_display_name": "psc-ep1",
            "private_service_connect_config": {
                "enablePrivateServiceConnect": True,
                "projectAllowlist": [PROJECT],
            },
        },
        "deploy_config": {
            "dedicated_resources": {
                "machine_spec": {
                    "machine_type": "g2-standard-24",
                    "accelerator_type": "NVIDIA_L4",
                    "accelerator_count": 2,
                },
                "min_replica_count": 1,
            }
        },
    }
    spec = check_deploy_request(body, PROJECT, LOCATION)
    assert spec.gcs_uri == "gs://bucket/models/tiny"
    assert spec.max_replicas == 1  # defaults to min
    assert spec.psc == {"enablePrivateServiceConnect": True, "projectAllowlist": [PROJECT]}
    assert spec.endpoint_user_id is None and spec.endpoint_display_name == "psc-ep1"


def test_minimal_body_gets_defaults() -> None:
    spec = check_deploy_request({"customModel": {"gcsUri": "gs://bkt/m/x"}}, PROJECT, LOCATION)
    machine = spec.machine
    assert (machine.machine_type, machine.accelerator_type, machine.accelerator_count) == (
        DEFAULT_MACHINE
    )
    assert spec.model_display_name == "x" and spec.endpoint_display_name == "x-endpoint"


@pytest.mark.parametrize(
    ("path", "value", "status", "needle"),
    [
        ("destination", "projects/other/locations/us-central1", 400, "does not match"),
        ("customModel", None, 400, "custom_model.gcs_uri is required"),
        ("customModel.gcsUri", "s3://bucket/x", 400, "not a gs:// URI"),
        ("customModel.gcsUri", "gs://UPPER/x", 400, "valid bucket"),
        (
            "deployConfig.dedicatedResources.machineSpec.machineType",
            "n1-standard-4",
            400,
            "Machine type 'n1-standard-4' is not supported",
        ),
        (
            "deployConfig.dedicatedResources.machineSpec.acceleratorType",
            999,
            400,
            "AcceleratorType), 999",
        ),
        (
            "deployConfig.dedicatedResources.machineSpec.acceleratorType",
            "NVIDIA_FOO",
            400,
            "Invalid enum value NVIDIA_FOO",
        ),
        (
            "deployConfig.dedicatedResources.machineSpec.acceleratorType",
            13,
            400,
            "NVIDIA_H100_80GB is not available on g2-standard-12",
        ),
        (
            "deployConfig.dedicatedResources.machineSpec.acceleratorType",
            None,
            400,
            "needs accelerator_type NVIDIA_L4",
        ),
        (
            "deployConfig.dedicatedResources.machineSpec.acceleratorCount",
            2,
            400,
            "accelerator_count 2 does not match g2-standard-12",
        ),
        (
            "deployConfig.dedicatedResources.machineSpec.machineType",
            None,
            400,
            "machine_type is required",
        ),
        ("deployConfig.dedicatedResources.minReplicaCount", -1, 400, "min_replica_count is -1"),
        ("deployConfig.dedicatedResources.initialReplicaCount", 1, 400, "Scale To Zero only"),
        (
            "deployConfig.dedicatedResources.scaleToZeroSpec",
            {"idleScaledownPeriod": "300s"},
            400,
            "Scale To Zero only",
        ),
        ("deployConfig.dedicatedResources.minReplicaCount", 3, 400, "is below min_replica_count"),
        ("deployConfig.dedicatedResources.minReplicaCount", "abc", 400, "Invalid JSON payload"),
        ("endpointConfig.endpointUserId", "1abc", 400, "endpoint_user_id '1abc' is invalid"),
        ("endpointConfig.endpointUserId", "Bad-Id", 400, "is invalid"),
        ("endpointConfig.endpointUserId", "ends-with-", 400, "is invalid"),
        ("endpointConfig.endpointUserId", "a" * 64, 400, "is invalid"),
        ("modelConfig.modelUserId", "-model", 400, "model_user_id '-model' is invalid"),
        ("modelConfig.modelDisplayName", "x" * 129, 400, "at most 128"),
        (
            "endpointConfig.privateServiceConnectConfig",
            {"enablePrivateServiceConnect": True},
            400,
            "project_allowlist is empty",
        ),
        ("deployConfig.unknownField", 1, 400, 'no field named "unknownField"'),
        ("huggingFaceModelId", "meta-llama/Llama-3.1-8B", 400, 'multiple "artifacts"'),
    ],
)
def test_bad_requests_are_rejected_with_a_clear_message(
    path: str, value: Any, status: int, needle: str
) -> None:
    error = rejected(with_change(path, value))
    assert error.http_status == status, error.message
    assert needle in error.message


def test_publisher_models_are_not_emulated() -> None:
    body = with_change("customModel", None) | {"huggingFaceModelId": "meta-llama/Llama-3.1-8B"}
    error = rejected(body)
    assert error.http_status == 501 and "custom weights only" in error.message


def test_ids_at_the_limits_are_accepted() -> None:
    body = with_change("endpointConfig.endpointUserId", "a" + "b" * 61 + "9")
    body["modelConfig"]["modelUserId"] = "_" + "m" * 62
    spec = check_deploy_request(body, PROJECT, LOCATION)
    assert len(spec.endpoint_user_id or "") == 63 and len(spec.model_user_id or "") == 63
    assert (
        check_deploy_request(
            with_change("endpointConfig.endpointUserId", "123456789"), PROJECT, LOCATION
        ).endpoint_user_id
        == "123456789"
    )


@pytest.mark.parametrize("body", [[1, 2], "text", 5])
def test_non_object_bodies_are_rejected(body: Any) -> None:
    assert "Expected a DeployRequest object" in rejected(body).message


def test_bad_project_in_url_is_rejected() -> None:
    with pytest.raises(RpcError, match="Invalid project"):
        check_deploy_request(SDK_BODY, "bad project", LOCATION)


def test_endpoint_update_labels_and_display_name() -> None:
    changes = check_endpoint_update(
        {"labels": {"modeldrop-deployment": "abc123"}, "displayName": "new"},
        "labels,display_name",
    )
    assert changes == {"labels": {"modeldrop-deployment": "abc123"}, "displayName": "new"}


@pytest.mark.parametrize(
    ("body", "mask", "needle"),
    [
        ({"labels": {"a": "b"}}, "", "update_mask is required"),
        ({"labels": {"a": "b"}}, "trafficSplit", "not supported"),
        ({"labels": {"Bad": "b"}}, "labels", "Label key 'Bad'"),
        ({"labels": {"ok": "Not OK"}}, "labels", "Label value 'Not OK'"),
        ({"nope": 1}, "labels", "Invalid JSON payload"),
        ({"displayName": ""}, "displayName", "cannot be empty"),
    ],
)
def test_bad_endpoint_updates_are_rejected(body: dict, mask: str, needle: str) -> None:
    with pytest.raises(RpcError) as info:
        check_endpoint_update(body, mask)
    assert info.value.http_status == 400 and needle in info.value.message


def test_too_many_labels() -> None:
    with pytest.raises(RpcError, match="at most 64"):
        check_labels({f"k{i}": "v" for i in range(65)})
