"""deploy: a validated deployment arrives from the queue; claim it and call Vertex AI.

Only the worker whose claim (VALIDATED -> DEPLOYING, preconditioned) succeeds deploys. The
endpoint id is derived from the deployment id, so a deploy retried after a crash finds its own
endpoint instead of creating a second one.
"""

from __future__ import annotations

from datetime import datetime

from modeldrop import logs
from modeldrop.domain.deployment import Deployment, State, update
from modeldrop.domain.findings import excerpt
from modeldrop.service.context import Context
from modeldrop.service.ports import DeployError
from modeldrop.service.records import claim, commit, fail, retry_later

log = logs.get("deploy")


def unstarted(record: Deployment, now: datetime) -> bool:
    """A DEPLOYING claim that never got as far as an operation and whose holder is gone."""
    return (
        record.state is State.DEPLOYING
        and not record.operation
        and not record.endpoint
        and record.lease_expired(now)
    )


def on_validated(ctx: Context, deployment_id: str) -> Deployment | None:
    """Handle one queue message. Raises only for a retryable Vertex error that has not used up
    the record's attempts, so the message is delivered again."""
    record = ctx.store.get(deployment_id)
    if record is None:
        log.warning("no deployment %s; message dropped", excerpt(deployment_id))
        return None
    if record.state is State.VALIDATED or unstarted(record, ctx.clock()):
        return claim_and_deploy(ctx, record)
    log.info(
        "duplicate or late message: deployment is %s",
        record.state,
        extra={"deployment_id": record.id},
    )
    return record


def claim_and_deploy(ctx: Context, record: Deployment) -> Deployment:
    """Claim a VALIDATED record, or take over an unstarted DEPLOYING one, and deploy it."""
    claimed = claim(ctx, record, State.DEPLOYING)
    if claimed is None or claimed.state is not State.DEPLOYING:
        return claimed or record
    return start_deploy(ctx, claimed)


def start_deploy(ctx: Context, record: Deployment) -> Deployment:
    """Call Deploy for a record this worker has claimed, and record what it started."""
    try:
        started = ctx.deployer.deploy(record)
    except DeployError as exc:
        if exc.retryable:
            return retry_later(ctx, record, exc)
        return fail(ctx, record, exc) or record
    log.info(
        "deploy started: %s",
        started.operation or started.endpoint,
        extra={"deployment_id": record.id},
    )
    recorded = update(
        record, ctx.clock(), operation=started.operation, endpoint=started.endpoint, error=None
    )
    return commit(ctx, recorded) or record
