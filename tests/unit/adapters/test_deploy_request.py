"""The DeployRequest built from a deployment: every field the seed's curl examples set."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import aiplatform_v1beta1

from modeldrop.adapters.vertex_deployer import DISPLAY_NAME_CHARS, deploy_request
from modeldrop.domain.deployment import new_deployment

AT = datetime(2026, 11, 24, tzinfo=UTC)
MACHINE = {
    "machine_type": "g2-standard-24",
    "accelerator_type": "NVIDIA_L4",
    "accelerator_count": 2,
}


def placed(region="us-central1", spot=False, attempt=1, machine=MACHINE):
    return {
        "attempt": attempt,
        "region": region,
        "machine_spec": machine,
        "spot": spot,
        "hourly_usd": 2.301,
    }


def deployment(**changes):
    base = new_deployment("bkt", "models/llama-ft", "fp", 7, AT)
    return replace(base, **{"machine": MACHINE, "placement": placed(), **changes})


def test_minimal_request_deploys_the_placement_with_the_attempts_own_ids():
    d = deployment()
    body = deploy_request(d, "proj")
    assert body["destination"] == "projects/proj/locations/us-central1"
    assert d.vertex_id == f"md-{d.id}-1"
    assert body["custom_model"] == {"gcs_uri": "gs://bkt/models/llama-ft"}
    assert body["model_config"]["model_user_id"] == d.vertex_id
    assert body["endpoint_config"]["endpoint_user_id"] == d.vertex_id
    assert body["endpoint_config"]["dedicated_endpoint_enabled"] is True
    resources = body["deploy_config"]["dedicated_resources"]
    assert resources["machine_spec"] == MACHINE
    assert (resources["min_replica_count"], resources["max_replica_count"]) == (1, 1)
    request = aiplatform_v1beta1.DeployRequest(body)  # the SDK accepts it as is
    assert request.deploy_config.dedicated_resources.machine_spec.accelerator_type == 11


def test_a_later_attempt_has_its_own_ids_region_and_machine():
    a100 = {"machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_TESLA_A100"}
    d = deployment(placement=placed("europe-west4", True, 3, {**a100, "accelerator_count": 1}))
    body = deploy_request(d, "proj")
    assert body["destination"] == "projects/proj/locations/europe-west4"
    assert body["endpoint_config"]["endpoint_user_id"] == f"md-{d.id}-3"
    assert body["model_config"]["model_user_id"] == f"md-{d.id}-3"
    resources = body["deploy_config"]["dedicated_resources"]
    assert resources["machine_spec"]["machine_type"] == "a2-highgpu-1g" and resources["spot"]
    assert d.attempt_endpoint("proj", "us-central1") == (
        f"projects/proj/locations/europe-west4/endpoints/md-{d.id}-3"
    )
    aiplatform_v1beta1.DeployRequest(body)


def test_a_deployment_without_a_placement_is_not_deployed():
    with pytest.raises(ValueError, match="no placement"):
        deploy_request(deployment(placement=None), "proj")


def test_overrides_set_names_replicas_spot_psc_and_machine():
    overrides = {
        "model_display_name": "bot",
        "endpoint_display_name": "bot-ep",
        "replicas": {"min": 2, "max": 3},
        "private_endpoint": {"enabled": True, "project_allowlist": ["client-project"]},
    }
    a100 = {
        "machine_type": "a2-ultragpu-1g",
        "accelerator_type": "NVIDIA_A100_80GB",
        "accelerator_count": 1,
    }
    d = deployment(overrides=overrides, placement=placed("europe-west4", True, 1, a100))
    body = deploy_request(d, "proj")
    assert body["model_config"]["model_display_name"] == "bot"
    assert body["endpoint_config"]["endpoint_display_name"] == "bot-ep"
    assert body["endpoint_config"]["private_service_connect_config"] == {
        "enable_private_service_connect": True,
        "project_allowlist": ["proj", "client-project"],  # its own project connects the PSC
    }
    resources = body["deploy_config"]["dedicated_resources"]
    assert resources["machine_spec"]["machine_type"] == "a2-ultragpu-1g"
    assert (resources["min_replica_count"], resources["max_replica_count"], resources["spot"]) == (
        2,
        3,
        True,
    )
    aiplatform_v1beta1.DeployRequest(body)


def test_user_ids_follow_vertex_rules():
    long = new_deployment("b", "models/" + "X" * 200, "fp", 1, AT)
    for value in (long.attempt_id(1), long.attempt_id(1234)):
        assert len(value) <= 63 and value[0].isalpha() and value[-1].isalnum()
        assert set(value) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert long.attempt_id(1234).endswith("-1234") and long.attempt_id(1) != long.attempt_id(11)


def test_operator_psc_allowlist_makes_every_endpoint_private_unless_the_folder_says():
    body = deploy_request(deployment(), "proj", ("client-a", "client-b"))
    assert body["endpoint_config"]["private_service_connect_config"] == {
        "enable_private_service_connect": True,
        "project_allowlist": ["proj", "client-a", "client-b"],
    }
    own = {"private_endpoint": {"enabled": True, "project_allowlist": ["mine"]}}
    body = deploy_request(deployment(overrides=own), "proj", ("client-a",))
    assert body["endpoint_config"]["private_service_connect_config"]["project_allowlist"] == [
        "proj",
        "mine",
    ]


def test_a_long_folder_name_is_cut_to_vertex_display_name_length():
    long = "名" * 300
    d = replace(new_deployment("bkt", f"models/{long}", "fp", 7, AT), placement=placed())
    body = deploy_request(d, "proj")
    assert body["endpoint_config"]["endpoint_display_name"] == long[:DISPLAY_NAME_CHARS]
    assert body["model_config"]["model_display_name"] == long[:DISPLAY_NAME_CHARS]
    assert body["custom_model"]["gcs_uri"].endswith(long)  # the folder itself is untouched


def test_scale_to_zero_deploys_with_no_minimum_and_the_idle_period():
    overrides = {"scale_to_zero": {"idle_scaledown_seconds": 900}, "replicas": {"max": 3}}
    body = deploy_request(deployment(overrides=overrides), "proj")
    resources = body["deploy_config"]["dedicated_resources"]
    assert (resources["min_replica_count"], resources["max_replica_count"]) == (0, 3)
    assert resources["scale_to_zero_spec"] == {"idle_scaledown_period": {"seconds": 900}}
    assert "initial_replica_count" not in resources  # the API's default: 1
    spec = aiplatform_v1beta1.DeployRequest(body).deploy_config.dedicated_resources
    assert spec.min_replica_count == 0 and spec.max_replica_count == 3
    assert spec.scale_to_zero_spec.idle_scaledown_period == timedelta(seconds=900)
    assert "min_scaleup_period" not in spec.scale_to_zero_spec  # the API's default: 1 hour
    sent = json.loads(
        aiplatform_v1beta1.DeployRequest.to_json(aiplatform_v1beta1.DeployRequest(body))
    )
    assert sent["deployConfig"]["dedicatedResources"]["scaleToZeroSpec"] == {
        "idleScaledownPeriod": "900s"
    }


def test_scale_to_zero_caps_at_one_replica_without_replicas_max():
    overrides = {"scale_to_zero": {"idle_scaledown_seconds": 300}}
    resources = deploy_request(deployment(overrides=overrides), "proj")["deploy_config"][
        "dedicated_resources"
    ]
    assert (resources["min_replica_count"], resources["max_replica_count"]) == (0, 1)


def test_without_scale_to_zero_the_request_has_no_scale_to_zero_fields():
    for overrides in ({}, {"replicas": {"min": 2}}, {"idle_undeploy_after_seconds": 600}):
        resources = deploy_request(deployment(overrides=overrides), "proj")["deploy_config"][
            "dedicated_resources"
        ]
        assert "scale_to_zero_spec" not in resources
        assert resources["min_replica_count"] == overrides.get("replicas", {}).get("min", 1) >= 1
