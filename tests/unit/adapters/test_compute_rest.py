"""ComputeRest on a fake HTTP layer: what it sends, idempotent answers, and every refusal as a
DeployError with a stable code (and a bounded excerpt)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from modeldrop.adapters.compute_rest import (
    MAX_BODY,
    ComputeRest,
    classify,
    error_of,
    is_done,
    operation_error,
)
from modeldrop.service.ports import DeployError
from modeldrop.settings import Settings

P, R = "net-project", "us-central1"
SA = "projects/qabc-tp/regions/us-central1/serviceAttachments/gkedpm-1"
BASE = f"https://compute.example/compute/v1/projects/{P}/regions/{R}"


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.closed = False

    def iter_content(self, size: int) -> Any:
        for start in range(0, len(self.body), size):
            yield self.body[start : start + size]

    def close(self) -> None:
        self.closed = True


class FakeSession:
    """Answers queued responses (or raises queued exceptions); records the calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, Any]] = []
        self.responses: list[FakeResponse] = []

    def request(self, method: str, url: str, json: Any = None, **kwargs: Any) -> FakeResponse:
        assert kwargs["stream"] is True and kwargs["timeout"]
        self.calls.append((method, url, json))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        self.responses.append(answer)
        return answer


def rest(*answers: Any) -> tuple[ComputeRest, FakeSession]:
    settings = Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "vertex-project",
            "MODELDROP_COMPUTE_API_ENDPOINT": "https://compute.example",
            "MODELDROP_VERTEX_ANONYMOUS": "true",
        }
    )
    session = FakeSession(*answers)
    return ComputeRest(settings, session=session), session  # type: ignore[arg-type]


def google_error(status: int, reason: str, message: str) -> FakeResponse:
    return FakeResponse(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        },
    )


def operation(status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {"kind": "compute#operation", "name": "operation-1-a-b-c", "status": status, **extra}


def test_the_default_host_and_the_request_bodies() -> None:
    assert ComputeRest(Settings.from_env({})).base == "https://compute.googleapis.com/compute/v1"
    compute, session = rest(FakeResponse(200, operation()), FakeResponse(200, operation()))
    assert compute.insert_address(P, R, "md-ip", "psc-subnet") == operation()
    compute.insert_forwarding_rule(P, R, "md-psc", "vpc", "md-ip", SA)
    assert session.calls == [
        (
            "POST",
            f"{BASE}/addresses",
            {
                "name": "md-ip",
                "addressType": "INTERNAL",
                "purpose": "GCE_ENDPOINT",
                "subnetwork": f"projects/{P}/regions/{R}/subnetworks/psc-subnet",
            },
        ),
        (
            "POST",
            f"{BASE}/forwardingRules",
            {
                "name": "md-psc",
                "network": f"projects/{P}/global/networks/vpc",
                "IPAddress": f"projects/{P}/regions/{R}/addresses/md-ip",
                "target": SA,
                "loadBalancingScheme": "",
            },
        ),
    ]
    assert all(response.closed for response in session.responses)


def test_references_are_passed_as_given_and_ips_stay_ips() -> None:
    compute, session = rest(FakeResponse(200, operation()))
    link = f"https://www.googleapis.com/compute/v1/projects/{P}/global/networks/vpc"
    compute.insert_forwarding_rule(P, R, "md-psc", link, "10.0.0.5", SA)
    sent = session.calls[0][2]
    assert sent["network"] == link and sent["IPAddress"] == "10.0.0.5"


def test_idempotent_answers() -> None:
    exists = google_error(409, "alreadyExists", f"The resource 'projects/{P}/...' already exists")
    missing = google_error(404, "notFound", "The resource '...' was not found")
    compute, _ = rest(exists, exists, missing, missing, missing, missing)
    assert compute.insert_address(P, R, "md-ip", "psc") is None
    assert compute.insert_forwarding_rule(P, R, "md-psc", "vpc", "10.0.0.5", SA) is None
    assert compute.get_address(P, R, "md-ip") is None
    assert compute.get_forwarding_rule(P, R, "md-psc") is None
    assert compute.delete_address(P, R, "md-ip") is True
    assert compute.delete_forwarding_rule(P, R, "md-psc") is True


def test_a_delete_is_done_only_when_its_operation_is() -> None:
    not_ready = google_error(400, "resourceNotReady", "The resource '...' is not ready")
    compute, _ = rest(
        FakeResponse(200, operation("PENDING")),
        not_ready,
        FakeResponse(200, operation("DONE")),
    )
    assert compute.delete_forwarding_rule(P, R, "md-psc") is False  # started
    assert compute.delete_forwarding_rule(P, R, "md-psc") is False  # under way
    assert compute.delete_forwarding_rule(P, R, "md-psc") is True


def test_an_address_in_use_is_a_retryable_refusal_to_delete() -> None:
    message = (
        f"The address resource 'projects/{P}/regions/{R}/addresses/md-ip' is already being used "
        f"by 'projects/{P}/regions/{R}/forwardingRules/md-psc'"
    )
    compute, _ = rest(google_error(400, "resourceInUseByAnotherResource", message))
    with pytest.raises(DeployError) as caught:
        compute.delete_address(P, R, "md-ip")
    assert caught.value.code == "COMPUTE_IN_USE" and caught.value.retryable
    assert "forwardingRules/md-psc" in caught.value.message


@pytest.mark.parametrize(
    ("status", "reason", "message", "code", "retryable"),
    [
        (
            403,
            "forbidden",
            f"Required 'compute.addresses.createInternal' permission for 'projects/{P}/regions/"
            f"{R}/addresses/md-ip'",
            "COMPUTE_PERMISSION_DENIED",
            False,
        ),
        (
            401,
            "",
            "Request had invalid authentication credentials.",
            "COMPUTE_PERMISSION_DENIED",
            False,
        ),
        (
            403,
            "accessNotConfigured",
            "Compute Engine API has not been used in project 1 before or it is disabled.",
            "COMPUTE_API_DISABLED",
            False,
        ),
        (
            403,
            "quotaExceeded",
            "Quota 'INTERNAL_ADDRESSES' exceeded. Limit: 200.0 in region us-central1.",
            "COMPUTE_QUOTA",
            False,
        ),
        (
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'.",
            "COMPUTE_UNAVAILABLE",
            True,
        ),
        (400, "invalid", "Invalid value for field 'resource.name': 'X'.", "COMPUTE_INVALID", False),
        (
            404,
            "notFound",
            "The resource 'projects/p/regions/r/subnetworks/x' was not found",
            "COMPUTE_NOT_FOUND",
            False,
        ),
        (500, "backendError", "Internal error.", "COMPUTE_UNAVAILABLE", True),
        (503, "", "<html>unavailable</html>", "COMPUTE_UNAVAILABLE", True),
        (409, "resourceNotReady", "busy", "COMPUTE_UNAVAILABLE", True),
    ],
)
def test_refusals_get_stable_codes(
    status: int, reason: str, message: str, code: str, retryable: bool
) -> None:
    compute, _ = rest(google_error(status, reason, message))
    with pytest.raises(DeployError) as caught:
        compute.insert_address(P, R, "md-ip", "psc")
    assert caught.value.code == code and caught.value.retryable is retryable
    assert f"HTTP {status}" in caught.value.message
    if reason == "forbidden":
        assert "compute.addresses.createInternal" in caught.value.hint


def test_a_denial_without_a_named_permission_hints_the_calls_own() -> None:
    compute, _ = rest(google_error(403, "forbidden", "The caller does not have permission"))
    with pytest.raises(DeployError) as caught:
        compute.insert_forwarding_rule(P, R, "md-psc", "vpc", "10.0.0.5", SA)
    assert "compute.forwardingRules.pscCreate" in caught.value.hint
    assert "roles/compute.networkAdmin" in caught.value.hint


def test_unreachable_and_unreadable_answers() -> None:
    compute, _ = rest(
        requests.ConnectionError("connection refused"),
        requests.Timeout("read timed out"),
        FakeResponse(200, b"<html>not json</html>"),
        FakeResponse(200, b"[1, 2]"),
        FakeResponse(200, b"{" + b" " * (MAX_BODY + 10) + b"}"),
    )
    for _ in range(2):
        with pytest.raises(DeployError) as caught:
            compute.get_address(P, R, "md-ip")
        assert caught.value.code == "COMPUTE_UNAVAILABLE" and caught.value.retryable
    for _ in range(3):
        with pytest.raises(DeployError) as caught:
            compute.get_address(P, R, "md-ip")
        assert caught.value.code == "COMPUTE_BAD_RESPONSE"


def test_a_huge_error_body_is_read_in_part_and_quoted_short() -> None:
    huge = FakeResponse(500, b"x" * (10 * MAX_BODY))
    compute, _ = rest(huge)
    with pytest.raises(DeployError) as caught:
        compute.get_operation(P, R, "operation-1")
    assert caught.value.code == "COMPUTE_UNAVAILABLE" and len(caught.value.message) < 600


def test_bad_names_are_refused_before_any_call() -> None:
    compute, session = rest()
    for call in (
        lambda: compute.insert_address(P, R, "Bad_Name", "psc"),
        lambda: compute.get_address(P, "us central1", "md-ip"),
        lambda: compute.get_address("../evil", R, "md-ip"),
        lambda: compute.get_operation(P, R, "../../x"),
        lambda: compute.insert_forwarding_rule(P, R, "md-psc", "vpc", "10.0.0.5", "projects/x"),
        lambda: compute.insert_forwarding_rule(P, R, "md-psc", "v pc", "10.0.0.5", SA),
    ):
        with pytest.raises(DeployError) as caught:
            call()
        assert caught.value.code == "COMPUTE_INVALID"
    assert session.calls == []


def test_operations_get_and_wait() -> None:
    done = operation("DONE")
    compute, session = rest(FakeResponse(200, operation()), FakeResponse(200, done))
    assert not is_done(compute.get_operation(P, R, "operation-1-a-b-c"))
    assert is_done(compute.wait_operation(P, R, "operation-1-a-b-c"))
    assert session.calls[1][:2] == ("POST", f"{BASE}/operations/operation-1-a-b-c/wait")
    assert operation_error(done) is None


def test_operation_errors_get_stable_codes() -> None:
    target = (
        f"https://www.googleapis.com/compute/v1/projects/{P}/regions/{R}/forwardingRules/md-psc"
    )
    cases = {
        ("RESOURCE_NOT_FOUND", 404): "COMPUTE_NOT_FOUND",
        ("QUOTA_EXCEEDED", 403): "COMPUTE_QUOTA",
        ("IP_SPACE_EXHAUSTED", 400): "COMPUTE_QUOTA",
        ("RESOURCE_NOT_READY", 503): "COMPUTE_UNAVAILABLE",
        ("INVALID_FIELD_VALUE", 400): "COMPUTE_INVALID",
    }
    for (code, http), expected in cases.items():
        failed = operation(
            "DONE",
            operationType="insert",
            targetLink=target,
            httpErrorStatusCode=http,
            error={"errors": [{"code": code, "message": f"{code} happened"}]},
        )
        error = operation_error(failed)
        assert error is not None and error.code == expected, (code, error)
        assert f"projects/{P}/regions/{R}/forwardingRules/md-psc" in error.message
    failed_delete = operation(
        "DONE",
        operationType="delete",
        targetLink=target,
        httpErrorStatusCode=400,
        error={"errors": [{"code": "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "message": "used"}]},
    )
    compute, _ = rest(FakeResponse(200, failed_delete))
    with pytest.raises(DeployError) as caught:
        compute.delete_forwarding_rule(P, R, "md-psc")
    assert caught.value.code == "COMPUTE_IN_USE" and caught.value.retryable


def test_error_bodies_of_other_shapes() -> None:
    assert error_of(b"<html>502</html>") == ("", "<html>502</html>")
    assert error_of(json.dumps({"error": {"message": "m", "status": "UNAVAILABLE"}}).encode()) == (
        "UNAVAILABLE",
        "m",
    )
    detailed = {"error": {"message": "m", "details": [{"reason": "SERVICE_DISABLED"}]}}
    assert error_of(json.dumps(detailed).encode()) == ("SERVICE_DISABLED", "m")
    refused = classify(
        403, "SERVICE_DISABLED", "m", "addresses.insert", f"projects/{P}/regions/{R}"
    )
    assert refused.code == "COMPUTE_API_DISABLED" and f"--project={P}" in refused.hint
