"""Ending a deploy attempt that failed once its endpoint existed: a failed smoke test, a private
connection that was refused, a permanent Vertex AI error or the deploy time running out while
watching. The record keeps DEPLOYING, with its error and the attempt's "error" line, while its
endpoint (a private one's PSC endpoint first) is deleted, so nothing is left billing; then it
ends FAILED with that error.
"""

from __future__ import annotations

from typing import Any

from modeldrop.domain.deployment import Deployment, State, advance, update
from modeldrop.service import private_link, undeploy
from modeldrop.service.context import Context
from modeldrop.service.placement import attempt_entry
from modeldrop.service.records import commit
from modeldrop.service.serving_log import failure_logs


def failing(record: Deployment) -> bool:
    """Whether the record is deleting the endpoint of its failed attempt (then FAILED)."""
    if record.state is not State.DEPLOYING or record.placement is None or not record.attempts:
        return False
    last = record.attempts[-1]
    attempt = record.placement.get("attempt", record.attempt)
    return last.get("outcome") == "error" and last.get("attempt") == attempt


def fail(
    ctx: Context, record: Deployment, error: dict[str, Any], **changes: Any
) -> Deployment | None:
    """`begin`, then the first step of deleting the endpoint."""
    begun = begin(ctx, record, error, **changes)
    return step(ctx, begun) if begun is not None and failing(begun) else begun


def begin(
    ctx: Context, record: Deployment, error: dict[str, Any], **changes: Any
) -> Deployment | None:
    """Record `error` (with the server's last log lines) as the end of the current attempt, its
    endpoint (the one the attempt made, recorded or not) to be deleted next; a record without a
    placement ends FAILED at once. None when another worker changed the record first.
    `changes` are further fields to record (the smoke test's outcome)."""
    now = ctx.clock()
    details = {**error, "logs": failure_logs(ctx, record)}
    if record.placement is None:
        return commit(
            ctx,
            advance(
                record,
                State.FAILED,
                now,
                str(error["code"]),
                error=details,
                lease_expires_at=None,
                **changes,
            ),
        )
    entry = attempt_entry(record, "error", now, details)
    failed = update(
        record,
        now,
        endpoint=record.endpoint or undeploy.expected_endpoint(ctx, record),
        error=details,
        attempts=(*record.attempts, entry),
        lease_expires_at=None,
        **changes,
    )
    return commit(ctx, failed)


def step(ctx: Context, record: Deployment) -> Deployment | None:
    """One step of deleting a failing record's endpoint: the record as it is while that goes on,
    FAILED once it is gone."""
    if record.endpoint and not private_link.remove_endpoint(ctx, record, record.endpoint):
        return record
    code = str((record.error or {}).get("code", "DEPLOY_FAILED"))
    ended = advance(
        record,
        State.FAILED,
        ctx.clock(),
        code,
        endpoint=None,
        endpoint_dns=None,
        deployed_model_id=None,
        lease_expires_at=None,
    )
    return commit(ctx, ended)
