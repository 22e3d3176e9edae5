"""deploy: a validated deployment arrives from the queue; claim it and call Vertex AI.

Only the worker whose claim (VALIDATED -> DEPLOYING, preconditioned) succeeds deploys. The
endpoint id is derived from the deployment id, so a deploy retried after a crash finds its own
endpoint instead of creating a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modeldrop import logs
from modeldrop.domain.deployment import Deployment, State, advance, update
from modeldrop.service.context import Context
from modeldrop.service.ports import DeployError
from modeldrop.service.records import commit

log = logs.get("deploy")


def _lease_expired(record: Deployment, now: datetime) -> bool:
    return record.lease_expires_at is None or record.lease_expires_at <= now


def unstarted(record: Deployment, now: datetime) -> bool:
    """A DEPLOYING claim that never got as far as an operation and whose holder is gone."""
    return (
        record.state is State.DEPLOYING
        and not record.operation
        and not record.endpoint
        and _lease_expired(record, now)
    )


def on_validated(ctx: Context, deployment_id: str) -> Deployment | None:
    """Handle one queue message. Raises only for retryable Vertex errors (to be redelivered)."""
    record = ctx.store.get(deployment_id)
    if record is None:
        log.warning("no such deployment; message dropped", extra={"deployment_id": deployment_id})
        return None
    now = ctx.clock()
    lease = now + timedelta(seconds=ctx.settings.lease_seconds)
    if record.state is State.VALIDATED:
        claim = advance(record, State.DEPLOYING, now, lease_expires_at=lease)
    elif unstarted(record, now):
        claim = update(record, now, lease_expires_at=lease)
    else:
        log.info("duplicate or late message: deployment is %s", record.state,
                 extra={"deployment_id": record.id})  # fmt: skip
        return record
    claimed = commit(ctx, claim)
    return start_deploy(ctx, claimed) if claimed else record


def start_deploy(ctx: Context, record: Deployment) -> Deployment:
    """Call Deploy for a record this worker has claimed, and record what it started."""
    try:
        started = ctx.deployer.deploy(record)
    except DeployError as exc:
        if exc.retryable:
            commit(ctx, update(record, ctx.clock(), lease_expires_at=ctx.clock()))
            log.warning("deploy failed, will retry: %s", exc, extra={"deployment_id": record.id})
            raise
        failed = advance(record, State.FAILED, ctx.clock(), exc.code, error=exc.as_dict(),
                         lease_expires_at=None)  # fmt: skip
        return commit(ctx, failed) or record
    log.info("deploy started: %s", started.operation or started.endpoint,
             extra={"deployment_id": record.id})  # fmt: skip
    recorded = update(record, ctx.clock(), operation=started.operation, endpoint=started.endpoint)
    return commit(ctx, recorded) or record
