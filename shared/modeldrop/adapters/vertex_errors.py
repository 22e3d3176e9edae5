"""Classify Vertex AI errors: retryable or permanent, with a hint a person can act on.

The policy is a table (status -> retryable, hint); gRPC and REST errors both map onto it.
Capacity errors (no quota, stockout, not offered in the region) come first, from a table of
message patterns: they are permanent here, and another candidate should be tried instead.
"""

from __future__ import annotations

import re
from typing import Any

from modeldrop.service.ports import DeployError

# HTTP status -> the canonical google.rpc.Code name Google's REST front end pairs it with (the
# local Vertex emulator answers with the same pairs).
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
# (status or None for any, message pattern, capacity, code, hint), first match wins.
# Shapes and sources: reference/vertex_errors.md beside DESIGN.md.
CAPACITY_RULES: list[tuple[str | None, re.Pattern[str], str, str, str]] = [
    # 429 "The following quota metrics exceed quota limits: aiplatform.googleapis.com/custom_model_
    # training_nvidia_l4_gpus" (GoogleCloudPlatform/stable-diffusion-on-gcp issue 12); the serving
    # metric custom_model_serving_<gpu>_gpus follows the quota console's naming (an inference).
    (
        "RESOURCE_EXHAUSTED",
        re.compile(r"custom_model_serving_[a-z0-9_]+_gpus"),
        "no_quota",
        "QUOTA",
        POLICY["QUOTA"][1],
    ),
    # The deploy operation's error "Resources are insufficient in region: us-central1", after
    # every zone was tried (openreview/openreview-expertise issue 401); no code was reported.
    (
        None,
        re.compile(r"Resources are insufficient in region", re.IGNORECASE),
        "stockout",
        "STOCKOUT",
        "{region} has no free capacity for this machine right now (every zone was tried): "
        "deploy in another region or on another machine, or try again later.",
    ),
    # "When Spot VMs are preempted, the prediction job fails with a STOCKOUT error" (Vertex AI,
    # docs/predictions/use-spot-vms, "Preemption handling"): spot capacity taken back before the
    # model was ready.
    (
        None,
        re.compile(r"\bSTOCKOUT\b"),
        "stockout",
        "STOCKOUT",
        "The Spot VMs in {region} were preempted or are out of stock: deploy on demand, in "
        "another region or later.",
    ),
    # [9] FAILED_PRECONDITION "The region us-central1 does not have enough resources available to
    # fulfill the request. Please try again later." (mrdbourke/cs329s-ml-deployment-tutorial
    # issue 7, Compute Engine through App Engine Flex).
    (
        None,
        re.compile(r"does not have enough resources available", re.IGNORECASE),
        "stockout",
        "STOCKOUT",
        "{region} has no free capacity for this machine right now: deploy in another region "
        "or on another machine, or try again later.",
    ),
    # 400 'Accelerator "NVIDIA_TESLA_K80" is not supported for machine type "n1-standard-4"'
    # (hashicorp/terraform-provider-google issue 18907): this machine cannot have this GPU.
    (
        None,
        re.compile(r"is not supported for machine type", re.IGNORECASE),
        "unavailable",
        "NOT_OFFERED",
        "Vertex AI does not offer this accelerator on this machine type ({reason}): choose "
        "another machine_spec in modeldrop.yaml or another catalog candidate.",
    ),
    # "... is not supported/available in region R" (or zone, location): no recorded body; the
    # wording of Google's regional offering errors, an inference.
    (
        None,
        re.compile(
            r"not (?:supported|available|offered) in (?:the )?(?:region|zone|location)", re.I
        ),
        "unavailable",
        "NOT_OFFERED",
        "{region} does not offer this machine or accelerator ({reason}): deploy in another "
        "region or on another machine.",
    ),
]
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
    rule = next((r for r in CAPACITY_RULES if r[0] in (None, status) and r[1].search(reason)), None)
    if rule:
        _, _, capacity, key, hint = rule
        return DeployError(
            f"Vertex AI answered {status}: {reason}",
            _fill(hint, reason, region),
            code=f"VERTEX_{key}",
            capacity=capacity,
        )
    if status == "RESOURCE_EXHAUSTED":
        # per-minute request quotas refill by themselves; a GPU serving quota has to be raised
        key = (
            "RATE_LIMITED"
            if RATE_PATTERN.search(reason) or "quota" not in reason.lower()
            else "QUOTA"
        )
    retryable, hint = POLICY.get(key, (False, "Vertex AI refused the request: {reason}"))
    return DeployError(
        f"Vertex AI answered {status}: {reason}",
        _fill(hint, reason, region),
        code=f"VERTEX_{key}",
        retryable=retryable,
    )


def _fill(hint: str, reason: str, region: str) -> str:
    """The hint's placeholders, from the error message."""
    quota = QUOTA_PATTERN.search(reason)
    permission = PERMISSION_PATTERN.search(reason)
    return hint.format(
        reason=reason,
        region=region,
        quota=quota.group(1) if quota else "the GPU serving quota of the chosen accelerator",
        permission=f" (missing permission: {permission.group(1)})" if permission else "",
    )
