"""deploy: a validated deployment arrives from the queue; claim it and land it on Vertex AI.

Only the worker whose claim (VALIDATED -> DEPLOYING, preconditioned) succeeds deploys. The
record is planned once (service.placement), then each placement attempt is claimed and started
in turn: an attempt refused at once for capacity makes way for the next in the same call. Each
attempt's endpoint id is derived from the deployment id and the attempt number, so a deploy
retried after a crash finds its own endpoint instead of creating a second one.
"""

from __future__ import annotations

from datetime import datetime

from modeldrop import logs
from modeldrop.domain.deployment import Deployment, State, update
from modeldrop.domain.findings import excerpt
from modeldrop.service import budget, placement
from modeldrop.service.context import Context
from modeldrop.service.placement import between_attempts
from modeldrop.service.ports import DeployError
from modeldrop.service.records import claim, commit, retry_later

log = logs.get("deploy")


def unstarted(record: Deployment, now: datetime) -> bool:
    """A DEPLOYING claim whose next attempt has not started (none recorded, or the last one's
    endpoint is gone) and whose holder is gone."""
    return (
        record.state is State.DEPLOYING
        and not record.operation
        and not record.endpoint
        and record.lease_expired(now)
    )


def on_validated(ctx: Context, deployment_id: str) -> Deployment | None:
    """Handle one queue message. Raises only for a retryable Vertex error that has not used up
    the record's claims, so the message is delivered again."""
    record = ctx.store.get(deployment_id)
    if record is None:
        log.warning("no deployment %s; message dropped", excerpt(deployment_id))
        return None
    if record.state is State.VALIDATED:
        admission = budget.admit(ctx, record)
        if not admission.admitted or admission.record is None:
            return admission.record
        return claim_and_deploy(ctx, admission.record)
    if unstarted(record, ctx.clock()):
        return claim_and_deploy(ctx, record)
    log.info(
        "duplicate or late message: deployment is %s",
        record.state,
        extra={"deployment_id": record.id},
    )
    return record


def claim_and_deploy(ctx: Context, record: Deployment) -> Deployment:
    """Claim a VALIDATED record, or take over an unstarted DEPLOYING one, and start its next
    placement attempt; again while attempts are refused at once for capacity."""
    while True:
        claimed = claim(ctx, record, State.DEPLOYING)
        if claimed is None or claimed.state is not State.DEPLOYING:
            return claimed or record
        result = start_deploy(ctx, claimed)
        if not between_attempts(result) or not unstarted(result, ctx.clock()):
            return result
        record = result


def start_deploy(ctx: Context, record: Deployment) -> Deployment:
    """Plan a claimed record if it was not yet, record its attempt, call Deploy, and record
    what it started (or how it ended)."""
    if record.candidates is None:
        record = placement.plan(ctx, record) or record
    if record.state is State.DEPLOYING and record.placement is None:
        record = placement.next_placement(ctx, record) or record
    if record.state is not State.DEPLOYING or record.placement is None:
        return record
    try:
        started = ctx.deployer.deploy(record)
    except DeployError as exc:
        if exc.retryable and not exc.capacity:
            return retry_later(ctx, record, exc)
        return placement.end_attempt(ctx, record, exc) or record
    log.info(
        "deploy started: %s",
        started.operation or started.endpoint,
        extra={"deployment_id": record.id},
    )
    recorded = update(
        record, ctx.clock(), operation=started.operation, endpoint=started.endpoint, error=None
    )
    return commit(ctx, recorded) or record
