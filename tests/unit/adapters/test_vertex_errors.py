"""Vertex AI error classification: retryable versus permanent, with hints."""

from __future__ import annotations

import json

import pytest
import requests
from google.api_core import exceptions

from modeldrop.adapters.vertex_deployer import classify_rpc_status
from modeldrop.adapters.vertex_errors import classify, status_name


def rest_error(http: int, status: str, message: str) -> exceptions.GoogleAPICallError:
    response = requests.Response()
    response.status_code = http
    response._content = json.dumps(
        {"error": {"code": http, "message": message, "status": status}}
    ).encode()
    response.request = requests.Request("POST", "http://vertex/v1beta1/x:deploy").prepare()
    return exceptions.from_http_response(response)


QUOTA = "Quota exceeded for aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus"
DENIED = "Permission 'aiplatform.endpoints.deploy' denied on resource"


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (rest_error(503, "UNAVAILABLE", "try later"), "VERTEX_UNAVAILABLE", True),
        (rest_error(504, "DEADLINE_EXCEEDED", "slow"), "VERTEX_DEADLINE_EXCEEDED", True),
        (rest_error(500, "INTERNAL", "oops"), "VERTEX_INTERNAL", True),
        (rest_error(429, "RESOURCE_EXHAUSTED", "rate limit"), "VERTEX_RATE_LIMITED", True),
        (rest_error(429, "RESOURCE_EXHAUSTED", QUOTA), "VERTEX_QUOTA", False),
        (rest_error(403, "PERMISSION_DENIED", DENIED), "VERTEX_PERMISSION_DENIED", False),
        (rest_error(400, "INVALID_ARGUMENT", "bad machine"), "VERTEX_INVALID_ARGUMENT", False),
        (exceptions.ServiceUnavailable("grpc unavailable"), "VERTEX_UNAVAILABLE", True),
        (exceptions.PermissionDenied("denied"), "VERTEX_PERMISSION_DENIED", False),
    ],
)
def test_classification(error, code, retryable):
    classified = classify(error, "us-central1")
    assert (classified.code, classified.retryable) == (code, retryable)
    assert classified.hint


def test_hints_name_what_to_do():
    quota = classify(rest_error(429, "RESOURCE_EXHAUSTED", QUOTA), "europe-west4")
    assert "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus" in quota.hint
    assert "europe-west4" in quota.hint
    denied = classify(rest_error(403, "PERMISSION_DENIED", DENIED), "us-central1")
    assert "roles/aiplatform.user" in denied.hint and "aiplatform.endpoints.deploy" in denied.hint
    invalid = classify(rest_error(400, "INVALID_ARGUMENT", "accelerator_count must be 2"), "x")
    assert "accelerator_count must be 2" in invalid.hint


def test_status_from_rest_body_and_http_fallback():
    assert status_name(rest_error(409, "ALREADY_EXISTS", "exists")) == "ALREADY_EXISTS"
    bare = requests.Response()
    bare.status_code = 409
    bare._content = b"not json"
    bare.request = requests.Request("GET", "http://x").prepare()
    assert status_name(exceptions.from_http_response(bare)) == "ALREADY_EXISTS"


# Recorded shapes (reference/vertex_errors.md): the serving metric follows the console's naming.
SERVING_QUOTA = (
    "The following quota metrics exceed quota limits: "
    "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus"
)
TRAINING_QUOTA = SERVING_QUOTA.replace("serving", "training")
STOCKOUT = "Resources are insufficient in region: us-central1."
COMPUTE_STOCKOUT = (
    "The region us-central1 does not have enough resources available to fulfill the request. "
    "Please try again later."
)
MISMATCH = 'Accelerator "NVIDIA_TESLA_K80" is not supported for machine type "n1-standard-4"'


@pytest.mark.parametrize(
    ("error", "code", "capacity", "retryable"),
    [
        (rest_error(429, "RESOURCE_EXHAUSTED", SERVING_QUOTA), "VERTEX_QUOTA", "no_quota", False),
        (rest_error(429, "RESOURCE_EXHAUSTED", QUOTA), "VERTEX_QUOTA", "no_quota", False),
        (rest_error(429, "RESOURCE_EXHAUSTED", TRAINING_QUOTA), "VERTEX_QUOTA", None, False),
        (
            rest_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for online_prediction_requests"),
            "VERTEX_RATE_LIMITED",
            None,
            True,
        ),
        (exceptions.from_grpc_status(8, STOCKOUT), "VERTEX_STOCKOUT", "stockout", False),
        (exceptions.from_grpc_status(13, STOCKOUT), "VERTEX_STOCKOUT", "stockout", False),
        (exceptions.from_grpc_status(9, COMPUTE_STOCKOUT), "VERTEX_STOCKOUT", "stockout", False),
        (rest_error(400, "INVALID_ARGUMENT", MISMATCH), "VERTEX_NOT_OFFERED", "unavailable", False),
        (
            rest_error(400, "INVALID_ARGUMENT", "a3-highgpu-1g is not supported in region x1"),
            "VERTEX_NOT_OFFERED",
            "unavailable",
            False,
        ),
        (
            rest_error(400, "INVALID_ARGUMENT", "Machine type 'x9' is not supported for deploying"),
            "VERTEX_INVALID_ARGUMENT",
            None,
            False,
        ),
        (rest_error(503, "UNAVAILABLE", "try later"), "VERTEX_UNAVAILABLE", None, True),
    ],
)
def test_capacity_classification(error, code, capacity, retryable):
    classified = classify(error, "us-central1")
    assert (classified.code, classified.capacity, classified.retryable) == (
        code,
        capacity,
        retryable,
    )
    assert classified.hint


def test_capacity_hints_name_the_quota_or_the_region():
    quota = classify(rest_error(429, "RESOURCE_EXHAUSTED", SERVING_QUOTA), "europe-west4")
    assert "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus" in quota.hint
    assert "europe-west4" in quota.hint
    stockout = classify_rpc_status(8, STOCKOUT, "us-east5")
    assert (stockout.code, stockout.capacity) == ("VERTEX_STOCKOUT", "stockout")
    assert "us-east5" in stockout.hint and STOCKOUT in stockout.message
    # a Spot VM preempted before the model was ready (docs/predictions/use-spot-vms)
    preempted = classify_rpc_status(8, "STOCKOUT: Spot VMs preempted in region: us-east5.", "r")
    assert (preempted.code, preempted.capacity) == ("VERTEX_STOCKOUT", "stockout")
