"""The model server's last log lines for a failed deployment's `error.logs` (best effort)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modeldrop import logs
from modeldrop.domain.deployment import Deployment
from modeldrop.service.context import Context, describe

log = logs.get("serving_log")
FAILURE_LINES = 20


def failure_logs(ctx: Context, record: Deployment) -> list[dict[str, Any]]:
    """The last FAILURE_LINES entries of the record's endpoint (the current attempt's when none
    is recorded), oldest first; [] when there are none or the log cannot be read."""
    if not record.endpoint:
        endpoint = record.attempt_endpoint(ctx.settings.project, ctx.settings.region)
        record = replace(record, endpoint=endpoint)
    try:
        entries = ctx.serving_logs.newest(record, FAILURE_LINES)
    except Exception as exc:  # the failure is recorded either way; its log is a bonus
        log.warning("serving log not read: %s", describe(exc), extra={"deployment_id": record.id})
        return []
    return [entry.as_dict() for entry in reversed(entries)]
