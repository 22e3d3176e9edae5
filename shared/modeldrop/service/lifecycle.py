"""A deployment's life after Deploy: watching it come up, and taking it down again.

Used by reconcile (every tick) and by the api (a status read refreshes a DEPLOYING record;
DELETE starts the undeploy), so both move records the same way.
"""

from __future__ import annotations

from datetime import timedelta

from modeldrop import logs
from modeldrop.domain.deployment import (
    ActionRefused,
    Deployment,
    State,
    advance,
    update,
)
from modeldrop.service import placement, private_link, revisions, smoke, teardown, undeploy
from modeldrop.service.context import Context, describe
from modeldrop.service.ports import DeployError
from modeldrop.service.records import commit, fail, hand_over

log = logs.get("lifecycle")
MAX_DEPLOY_TIME = timedelta(hours=3)
CANCELLABLE = (State.DETECTED, State.VALIDATING, State.VALIDATED)


def poll_deploy(ctx: Context, record: Deployment) -> Deployment | None:
    """Look at a started deploy attempt (its operation, or its endpoint after a crash-retry) and
    move the record on when it is over: DEPLOYED, FAILED, or (an attempt that failed for
    capacity) its endpoint deleted and the record queued for the next attempt. None while it is
    still running.

    A record with an endpoint but no operation (a crash-retry found its endpoint there) gets the
    Deploy operation Vertex AI lists for it, so a failed deploy ends at once.

    A Vertex AI error while looking (or while connecting a private endpoint) ends the record
    FAILED when it is permanent, or when it has lasted past MAX_DEPLOY_TIME, its endpoint
    deleted first (service.teardown); a passing one (or an answer that cannot be read) is
    raised, to be looked at again next tick."""
    try:
        return _poll(ctx, record)
    except Exception as caught:  # an answer we cannot read is passing, until the deploy time ends
        exc = caught if isinstance(caught, DeployError) else _unreadable(caught)
        if exc.retryable and ctx.clock() - record.updated_at < MAX_DEPLOY_TIME:
            if exc is caught:
                raise
            raise exc from caught
        if teardown.failing(record):  # deleting its endpoint failed for good
            return _endpoint_left(ctx, record, exc.message)
        begun = teardown.begin(ctx, record, exc.as_dict())
        # deleting its endpoint is a poll of its own, so what that raises is handled as above
        return poll_deploy(ctx, begun) if begun and teardown.failing(begun) else begun


def _unreadable(exc: Exception) -> DeployError:
    return DeployError(
        f"Watching the deploy failed: {describe(exc)}.",
        "Check the deployment's endpoint and operation in the Vertex AI console.",
        code="VERTEX_UNREADABLE",
        retryable=True,
    )


def _poll(ctx: Context, record: Deployment) -> Deployment | None:
    now = ctx.clock()
    if placement.clearing(record):
        cleared = placement.clear(ctx, record)
        if cleared is record:  # its model is still being undeployed
            return _timeout(ctx, record)
        return _next_attempt(ctx, cleared)
    if teardown.failing(record):
        cleaned = teardown.step(ctx, record)
        return _timeout(ctx, record) if cleaned is record else cleaned
    if record.endpoint and not record.operation:
        found = ctx.deployer.find_deploy_operation(record)
        if found:
            # updated_at is kept, so MAX_DEPLOY_TIME still counts from the deploy
            recorded = commit(ctx, update(record, record.updated_at, operation=found))
            if recorded is None:
                return None
            record = recorded
    if record.operation:
        status = ctx.deployer.operation_status(record.operation)
        if not status.done:
            return _timeout(ctx, record)
        if status.error:
            error = DeployError(
                status.error["message"],
                status.error.get("hint", ""),
                code=status.error["code"],
                capacity=status.capacity,
            )
            return _next_attempt(ctx, placement.end_attempt(ctx, record, error))
        endpoint = status.endpoint or record.endpoint
    else:
        endpoint = record.endpoint
    info = ctx.deployer.describe_endpoint(endpoint) if endpoint else None
    if info is None or not info.ready:
        return _timeout(ctx, record)
    connected = private_link.connect(ctx, record, info)
    if connected is None:  # its PSC endpoint is being made
        return _timeout(ctx, record)
    record = connected
    if not smoke.due(record, now):
        return None  # another worker is running its smoke test
    labels = record.overrides.get("labels")
    if labels:
        ctx.deployer.set_labels(info.name, labels)
    tested = smoke.run(ctx, record, info)
    if tested is None or tested.state is not State.DEPLOYED:
        return tested
    try:
        return revisions.promote(ctx, tested)
    except Exception as exc:  # DEPLOYED is recorded; reconcile finishes the promotion
        log.warning(
            "promotion left to reconcile: %s", describe(exc), extra={"deployment_id": tested.id}
        )
        return tested


def _next_attempt(ctx: Context, record: Deployment | None) -> Deployment | None:
    """Hand a record whose failed attempt is cleared over to the deploy function (which starts
    the next attempt: deploys need the Vertex SDK, polls do not)."""
    if record is not None and placement.between_attempts(record):
        hand_over(ctx, record)
    return record


def _timeout(ctx: Context, record: Deployment) -> Deployment | None:
    if ctx.clock() - record.updated_at < MAX_DEPLOY_TIME:
        return None
    if teardown.failing(record) or placement.clearing(record):
        return _endpoint_left(ctx, record, f"it was still there after {MAX_DEPLOY_TIME}")
    error = DeployError(
        f"The deploy did not finish within {MAX_DEPLOY_TIME}.",
        "Read error.logs for the server's side, then upload the folder again.",
        code="DEPLOY_TIMEOUT",
    )
    return teardown.fail(ctx, record, error.as_dict())


def _endpoint_left(ctx: Context, record: Deployment, why: str) -> Deployment | None:
    """FAILED while the endpoint of its failed attempt may still be there (DELETE retries)."""
    cause = (record.error or {}).get("code", "an error")
    error = DeployError(
        f"The deploy failed ({cause}) and its endpoint could not be deleted: {why}.",
        "Delete the deployment (DELETE /v1/deployments/{id}) to try again, or delete the "
        "endpoint in the Vertex AI console: it may still bill.",
        code="ENDPOINT_NOT_DELETED",
    )
    return fail(ctx, record, error)


def start_delete(ctx: Context, record: Deployment) -> Deployment | None:
    """DELETE of a deployment: undeploy a served (or failed) one, cancel one not yet deploying.

    Returns the record as it now stands; None when someone else changed it first. Raises
    DeployError when Vertex AI refuses, and ActionRefused when the state allows no delete yet.
    """
    if record.state in (State.DEPLOYED, State.FAILED):
        return undeploy.begin(ctx, record, "DELETE")
    if record.state in CANCELLABLE:
        return commit(ctx, advance(record, State.SUPERSEDED, ctx.clock(), "cancelled by DELETE"))
    if record.state is State.DEPLOYING:
        raise ActionRefused(
            f"Deployment {record.id} is still DEPLOYING.",
            "Vertex AI cannot undeploy mid-deploy; delete it once it is DEPLOYED or FAILED.",
            code="DEPLOY_IN_PROGRESS",
        )
    return record  # UNDEPLOYING goes on by itself; the rest has nothing left to delete
