"""reconcile: the periodic tick that moves long-running work forward and repairs what was lost.

- DEPLOYING: poll the attempt's operation (or, after a crash-retry, its endpoint) -> DEPLOYED /
  FAILED, or, when it failed for capacity, delete its endpoint and queue the next attempt; take
  over claims whose lease expired before an attempt's operation was recorded.
- DEPLOYED: finish a pending promotion to serving revision, retire a replaced revision after
  its grace period, undeploy an idle one (service.revisions).
- UNDEPLOYING: step the undeploy until the endpoint is gone -> UNDEPLOYED.
- DETECTED / VALIDATING with an expired lease: validate again (the worker died, or gave the
  claim back after a storage error); each claim counts, and the record ends FAILED after the
  last attempt.
- VALIDATED with an expired lease: queue again (the message was lost).
- Any record whose last notification was not confirmed (for a while): publish it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from modeldrop import logs
from modeldrop.domain.deployment import Deployment, State, update
from modeldrop.domain.findings import excerpt
from modeldrop.service import revisions, undeploy
from modeldrop.service.context import Context
from modeldrop.service.deploy import claim_and_deploy, unstarted
from modeldrop.service.lifecycle import poll_deploy
from modeldrop.service.records import commit, hand_over, publish_pending
from modeldrop.service.validate import drive_validation

log = logs.get("reconcile")
# A notification still pending this long after its transition was lost (its writer normally
# publishes it within milliseconds); younger ones are left to their writer.
PENDING_GRACE = timedelta(seconds=15)


@dataclass
class ReconcileReport:
    """What one tick did, for logs and tests."""

    moved: dict[str, str] = field(default_factory=dict)  # deployment id -> new state
    errors: dict[str, str] = field(default_factory=dict)


def _all(ctx: Context, states: tuple[State, ...]) -> Iterator[Deployment]:
    token = None
    while True:
        page, token = ctx.store.list_page(states=states, limit=100, page_token=token)
        yield from page
        if not token:
            return


def reconcile(ctx: Context) -> ReconcileReport:
    """One tick. Errors on one record never stop the others."""
    report = ReconcileReport()
    steps = (
        ((State.DEPLOYING,), _deploying),
        ((State.DEPLOYED,), revisions.tend),
        ((State.UNDEPLOYING,), undeploy.step),
        ((State.DETECTED, State.VALIDATING), _stale_validation),
        ((State.VALIDATED,), _unclaimed),
    )
    for states, step in steps:
        for record in _all(ctx, states):
            try:
                result = step(ctx, record)
            except Exception as exc:  # one bad record must not block the rest
                report.errors[record.id] = f"{type(exc).__name__}: {excerpt(str(exc))}"
                log.error(
                    "reconcile step failed: %s",
                    report.errors[record.id],
                    extra={"deployment_id": record.id},
                )
                continue
            if result is not None and result.state is not record.state:
                report.moved[record.id] = str(result.state)
    for record in ctx.store.pending_notifications():
        if ctx.clock() - record.updated_at >= PENDING_GRACE:
            publish_pending(ctx, record)
    return report


def _deploying(ctx: Context, record: Deployment) -> Deployment | None:
    if unstarted(record, ctx.clock()):
        return claim_and_deploy(ctx, record)
    return poll_deploy(ctx, record)


def _stale_validation(ctx: Context, record: Deployment) -> Deployment | None:
    return drive_validation(ctx, record) if record.lease_expired(ctx.clock()) else None


def _unclaimed(ctx: Context, record: Deployment) -> Deployment | None:
    now = ctx.clock()
    if not record.lease_expired(now):
        return None
    lease = Deployment.lease_end(now, ctx.settings.lease_seconds)
    bumped = commit(ctx, update(record, now, lease_expires_at=lease))
    if bumped:
        hand_over(ctx, bumped)
    return bumped
