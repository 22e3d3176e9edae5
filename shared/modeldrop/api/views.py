"""What the API shows of a deployment: its record plus links to act on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from modeldrop.domain import cost
from modeldrop.domain.deployment import Deployment, snapshot

HIDDEN = (
    "etag",
    "lease_expires_at",
    "event_sequence",
    "published_sequence",
    "promotion_pending",
    "budget_hold",
)


def status_body(deployment: Deployment, base_url: str, now: datetime) -> dict[str, Any]:
    """The status document of one deployment (the status URL's body), with its cost estimate
    as of `now`. Links start with `base_url` (configured, never taken from a request; no
    trailing '/'), or are paths when it is empty; ids and names in them are percent-encoded."""
    body = {k: v for k, v in snapshot(deployment).items() if k not in HIDDEN}
    validation = deployment.validation or {}
    body["matched_base"] = validation.get("matched_base")
    body["findings"] = validation.get("findings", [])
    body["hourly_usd"] = cost.money(cost.hourly_usd(deployment))
    body["accrued_usd"] = cost.money(cost.accrued_usd(deployment, now))
    one = f"{base_url}/v1/deployments/{quote(deployment.id, safe='')}"
    body["links"] = {
        "self": one,
        "model": f"{base_url}/v1/models/{quote(deployment.model, safe='')}",
        "chat": f"{one}/chat/completions",
        "predict": f"{one}:predict",
    }
    return body
