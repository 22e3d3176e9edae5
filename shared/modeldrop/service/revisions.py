"""One serving revision per model name: promotion, retirement, idle undeploy, rollback, redeploy.

The name's pointer (a document of its own, written with preconditions) says which deployment
serves it. A revision reaching DEPLOYED is weighed against it (`promote`, retried by reconcile
until done: `promotion_pending`), so two revisions reaching DEPLOYED at once still leave one
serving. Reconcile retires a DEPLOYED revision that does not serve its name once it has had
MODELDROP_RETIRE_AFTER_SECONDS (at least domain.revisions.MIN_GRACE_SECONDS), and undeploys
one without a proxied request for its idle limit. A FAILED or REJECTED revision never reaches
the pointer, so a bad upload never touches the serving one.
"""

from __future__ import annotations

from dataclasses import dataclass

from modeldrop import logs
from modeldrop.domain import revisions
from modeldrop.domain.completion import fingerprint
from modeldrop.domain.deployment import ActionRefused, Deployment, State, advance, update
from modeldrop.domain.revisions import ModelPointer
from modeldrop.errors import ModeldropError
from modeldrop.service import undeploy
from modeldrop.service.context import Context
from modeldrop.service.records import commit, hand_over

log = logs.get("revisions")
POINTER_TRIES = 5  # reads and writes of a pointer before giving up (reconcile goes on later)


class PointerContended(ModeldropError):
    """The pointer kept changing while a revision was weighed: tried again by reconcile."""

    code = "POINTER_CONTENDED"


@dataclass(frozen=True)
class Serving:
    """What a model name answers with: its pointer (None before any revision was DEPLOYED) and
    the record it points at (None when that record is gone)."""

    pointer: ModelPointer | None
    record: Deployment | None


def serving(ctx: Context, name: str) -> Serving:
    """The name's pointer and its serving record (in whatever state it is now)."""
    pointer = ctx.store.get_pointer(name)
    record = ctx.store.get(pointer.serving) if pointer else None
    return Serving(pointer, record)


def promote(ctx: Context, record: Deployment) -> Deployment:
    """Weigh a DEPLOYED record whose promotion is pending: it takes its name over when it is
    newer than the serving revision (or that one no longer answers). Then its promotion is
    done; reconcile retires the revision it replaced after the grace.
    Raises PointerContended when the pointer kept changing (the promotion stays pending)."""
    for _ in range(POINTER_TRIES):
        current = serving(ctx, record.model)
        if not revisions.takes_over(record, current.record):
            break
        pointer = revisions.promoted(current.pointer, record, ctx.clock())
        if pointer is current.pointer:
            break  # it serves already
        if ctx.store.put_pointer(pointer):
            log.info(
                "now serving %s (was %s)",
                record.model,
                current.pointer.serving if current.pointer else "none",
                extra={"deployment_id": record.id},
            )
            break
    else:
        raise PointerContended(
            f"The serving pointer of {record.model} kept changing.",
            "Reconcile weighs the revision again at its next tick.",
        )
    return _promotion_done(ctx, record)


def _promotion_done(ctx: Context, record: Deployment) -> Deployment:
    for _ in range(POINTER_TRIES):
        if record.state is not State.DEPLOYED or not record.promotion_pending:
            return record
        written = commit(ctx, update(record, ctx.clock(), promotion_pending=False))
        if written:
            return written
        record = ctx.store.get(record.id) or record
    return record


def tend(ctx: Context, record: Deployment) -> Deployment | None:
    """Reconcile's step for a DEPLOYED record: finish its promotion, retire it when it has been
    replaced for its grace period, or undeploy it when it has been idle for its limit."""
    if record.promotion_pending:
        return promote(ctx, record)
    if _retire_if_due(ctx, record):
        return ctx.store.get(record.id)
    limit = revisions.idle_seconds(record, ctx.settings.idle_undeploy_seconds)
    if revisions.idle_due(record, ctx.clock(), ctx.settings.idle_undeploy_seconds):
        return undeploy.begin(ctx, record, f"idle: no request for {limit} s")
    return None


def _retire_if_due(ctx: Context, record: Deployment) -> bool:
    """Retire a DEPLOYED revision that has not served its name for the grace period (re-read:
    the caller's copy may be old). Whether it started."""
    fresh = ctx.store.get(record.id)
    if fresh is None:
        return False
    pointer = ctx.store.get_pointer(fresh.model)
    now, grace = ctx.clock(), ctx.settings.retire_after_seconds
    if not revisions.retire_due(fresh, pointer, now, grace) or pointer is None:
        return False
    log.info("retired: %s serves instead", pointer.serving, extra={"deployment_id": fresh.id})
    return undeploy.begin(ctx, fresh, f"retired: replaced by {pointer.serving}") is not None


def rollback(ctx: Context, name: str) -> ModelPointer:
    """Point the name back at the revision it replaced, while that one is DEPLOYED. Raises
    ActionRefused (NO_PREVIOUS_REVISION, PREVIOUS_NOT_DEPLOYED, CONFLICT) otherwise."""
    for _ in range(POINTER_TRIES):
        pointer = ctx.store.get_pointer(name)
        if pointer is None or pointer.previous is None:
            raise ActionRefused(
                f"Model {name} has no previous revision to roll back to.",
                "Rollback needs a revision the serving one replaced, still DEPLOYED; "
                "see revisions in GET /v1/models/{name}.",
                code="NO_PREVIOUS_REVISION",
            )
        previous = ctx.store.get(pointer.previous)
        if previous is None or previous.state is not State.DEPLOYED:
            state = previous.state if previous else "deleted"
            raise ActionRefused(
                f"The previous revision {pointer.previous} of {name} is {state}, so the name "
                "cannot point back at it.",
                f"Redeploy it (POST /v1/deployments/{pointer.previous}:redeploy) and roll back "
                "once it is DEPLOYED, or upload the folder you want again.",
                code="PREVIOUS_NOT_DEPLOYED",
            )
        written = ctx.store.put_pointer(revisions.rolled_back(pointer, ctx.clock()))
        if written:
            log.info("rolled back to %s", written.serving, extra={"deployment_id": pointer.serving})
            return written
    raise ActionRefused(
        f"The serving pointer of {name} kept changing meanwhile.",
        "Try again in a moment.",
        code="CONFLICT",
    )


def redeploy(ctx: Context, record: Deployment) -> Deployment | None:
    """Deploy an UNDEPLOYED record again (the next deploy round, through placement, the budget
    and the smoke test) when its folder still has the same fingerprint. Raises ActionRefused
    (NOT_UNDEPLOYED, FOLDER_CHANGED), or AccessError when the folder cannot be listed. None:
    someone else changed the record first."""
    if record.state is not State.UNDEPLOYED:
        raise ActionRefused(
            f"Deployment {record.id} is {record.state}; only an UNDEPLOYED one is redeployed.",
            "A DEPLOYED one answers already; wait for an UNDEPLOYING one to finish.",
            code="NOT_UNDEPLOYED",
        )
    files = ctx.open_folder(record.gcs_uri).list_files()
    if fingerprint(files) != record.fingerprint:
        raise ActionRefused(
            f"The folder {record.gcs_uri} changed since deployment {record.id} was validated "
            f"(it now holds {len(files)} file(s)).",
            "A changed folder is a new revision: it deploys by itself once its upload is "
            "complete; see GET /v1/models/{name}.",
            code="FOLDER_CHANGED",
        )
    now = ctx.clock()
    again = advance(
        record,
        State.VALIDATED,
        now,
        f"redeploy (round {record.deploy_round + 1})",
        deploy_round=record.deploy_round + 1,
        candidates=None,
        preflight=None,
        placement=None,
        attempts=(),
        operation=None,
        endpoint=None,
        endpoint_dns=None,
        deployed_model_id=None,
        private_endpoint=None,
        smoke_test=None,
        blocked=None,
        error=None,
        last_used_at=None,
        lease_expires_at=Deployment.lease_end(now, ctx.settings.lease_seconds),
    )
    written = commit(ctx, again)
    if written is not None:
        hand_over(ctx, written)
    return written
