"""The serving-log route: the newest entries of a deployment's model server log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldrop import logs
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError
from modeldrop.api.status import get_deployment, limit_param, single_values
from modeldrop.errors import ModeldropError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # Cloud Logging's largest page
log = logs.get("api.logs")


def log_limit(args: Mapping[str, str]) -> int:
    """The `limit` query parameter: an integer in 1..MAX_LIMIT (default DEFAULT_LIMIT)."""
    return limit_param(args, DEFAULT_LIMIT, MAX_LIMIT)


def deployment_logs(
    ctx: ApiContext, deployment_id: str, query: Mapping[str, list[str]]
) -> dict[str, Any]:
    """The newest `limit` entries of the deployment's serving log, newest first: [] while it
    has none (before its first deploy attempt); 502 LOGS_UNAVAILABLE when it cannot be read."""
    limit = log_limit(single_values(query))
    record = get_deployment(ctx, deployment_id)
    try:
        entries = ctx.serving_logs.newest(record, limit)
    except ModeldropError as exc:
        log.warning("serving log unreadable: %s", exc.code, extra={"deployment_id": record.id})
        raise ApiError(
            exc.message,
            exc.hint or "Try again shortly.",
            code="LOGS_UNAVAILABLE",
            status=502,
        ) from exc
    return {"deployment_id": record.id, "entries": [e.as_dict() for e in entries[:limit]]}
