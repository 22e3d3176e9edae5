"""What the API shows of a deployment: its record plus links to act on it."""

from __future__ import annotations

from typing import Any

from modeldrop.domain.deployment import Deployment, snapshot

HIDDEN = ("etag", "lease_expires_at", "event_sequence", "published_sequence")


def status_body(deployment: Deployment, base_url: str) -> dict[str, Any]:
    """The status document of one deployment (the status URL's body)."""
    body = {k: v for k, v in snapshot(deployment).items() if k not in HIDDEN}
    validation = deployment.validation or {}
    body["matched_base"] = validation.get("matched_base")
    body["findings"] = validation.get("findings", [])
    root = base_url.rstrip("/")
    body["links"] = {
        "self": f"{root}/v1/deployments/{deployment.id}",
        "model": f"{root}/v1/models/{deployment.model}",
        "chat": f"{root}/v1/deployments/{deployment.id}/chat/completions",
        "predict": f"{root}/v1/deployments/{deployment.id}:predict",
    }
    return body
