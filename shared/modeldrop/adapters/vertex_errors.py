"""Classify Vertex AI errors: retryable or permanent, with a hint a person can act on.

The policy is a table (status -> retryable, hint); gRPC and REST errors both map onto it.
"""

from __future__ import annotations

import re
from typing import Any

from modeldrop.service.ports import DeployError

HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# status -> (retryable, hint). "{...}" placeholders are filled from the error message.
POLICY: dict[str, tuple[bool, str]] = {
    "UNAVAILABLE": (True, "Vertex AI is briefly unavailable; the call is retried."),
    "DEADLINE_EXCEEDED": (True, "The call timed out; it is retried."),
    "INTERNAL": (True, "Vertex AI had an internal error; the call is retried."),
    "ABORTED": (True, "The call was aborted by a concurrent change; it is retried."),
    "UNKNOWN": (True, "Vertex AI answered with an unknown error; the call is retried."),
    "RATE_LIMITED": (True, "Vertex AI is rate limiting requests; the call is retried later."),
    "QUOTA": (
        False,
        "Request more quota for {quota} in {region} (Google Cloud console > IAM & Admin > "
        "Quotas; GPU serving quota is 0 by default in many projects), or choose another machine "
        "in modeldrop.yaml.",
    ),
    "PERMISSION_DENIED": (
        False,
        "Grant the deploying service account roles/aiplatform.user{permission} and make sure the "
        "Vertex AI API is enabled in the project.",
    ),
    "UNAUTHENTICATED": (
        False,
        "No valid credentials: on Google Cloud the function's service account is used; locally "
        "run `gcloud auth application-default login`.",
    ),
    "INVALID_ARGUMENT": (False, "Vertex AI refused the request: {reason}"),
    "FAILED_PRECONDITION": (False, "Vertex AI refused the request in its current state: {reason}"),
    "NOT_FOUND": (False, "The resource does not exist (deleted outside modeldrop?): {reason}"),
    "ALREADY_EXISTS": (False, "A resource with this id already exists: {reason}"),
    "OUT_OF_RANGE": (False, "Vertex AI refused the request: {reason}"),
    "UNIMPLEMENTED": (False, "This Vertex AI region or API version does not offer the call."),
    "CANCELLED": (True, "The call was cancelled; it is retried."),
}
QUOTA_PATTERN = re.compile(r"(aiplatform\.googleapis\.com/[A-Za-z0-9_./-]+|[a-z_]+_gpus?)")
RATE_PATTERN = re.compile(r"per minute|rate limit|_requests", re.IGNORECASE)
PERMISSION_PATTERN = re.compile(r"(aiplatform\.[a-zA-Z]+\.[a-zA-Z]+)")


def status_name(exc: Any) -> str:
    """The canonical status of a google.api_core error, from gRPC or from the REST body."""
    grpc_code = getattr(exc, "grpc_status_code", None)
    if grpc_code is not None:
        return grpc_code.name
    response = getattr(exc, "response", None)
    try:
        status = response.json()["error"]["status"] if response is not None else None
        if isinstance(status, str) and status:
            return status
    except Exception:  # any unreadable body falls back to the HTTP code
        pass
    return HTTP_STATUS_NAMES.get(getattr(exc, "code", None) or 0, "UNKNOWN")


def _reason(exc: Any) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return re.sub(r"^(GET|POST|PATCH|DELETE|PUT) \S+: ", "", str(message)).strip()


def classify(exc: Any, region: str) -> DeployError:
    """A DeployError with a stable code (VERTEX_<STATUS>), the reason, a hint and retryability."""
    status = status_name(exc)
    reason = _reason(exc)
    key = status
    if status == "RESOURCE_EXHAUSTED":
        # per-minute request quotas refill by themselves; a GPU serving quota has to be raised
        key = (
            "RATE_LIMITED"
            if RATE_PATTERN.search(reason) or "quota" not in reason.lower()
            else "QUOTA"
        )
    retryable, hint = POLICY.get(key, (False, "Vertex AI refused the request: {reason}"))
    quota = QUOTA_PATTERN.search(reason)
    permission = PERMISSION_PATTERN.search(reason)
    hint = hint.format(
        reason=reason,
        region=region,
        quota=quota.group(1) if quota else "the GPU serving quota of the chosen accelerator",
        permission=f" (missing permission: {permission.group(1)})" if permission else "",
    )
    return DeployError(
        f"Vertex AI answered {status}: {reason}", hint, code=f"VERTEX_{key}", retryable=retryable
    )
