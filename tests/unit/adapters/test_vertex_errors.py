"""Vertex AI error classification: retryable versus permanent, with hints."""

from __future__ import annotations

import json

import pytest
import requests
from google.api_core import exceptions

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
