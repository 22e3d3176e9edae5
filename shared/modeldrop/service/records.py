"""Writing deployment records: preconditioned writes, then exactly one notification each.

Work on a record (validating it, starting its deploy) is claimed with a lease and counted: a
retryable failure gives the claim back to be retried, and after `settings.max_attempts`
(MODELDROP_MAX_ATTEMPTS) claims that did not finish the record ends FAILED, so no input and no
outage keeps a record busy forever.
"""

from __future__ import annotations

from dataclasses import replace

from modeldrop import logs
from modeldrop.domain.deployment import TRANSITIONS, Deployment, State, advance, update
from modeldrop.errors import ModeldropError
from modeldrop.service.context import Context
from modeldrop.service.ports import RecordTooLarge

log = logs.get("records")
WORK = {State.VALIDATING: "Validation", State.DEPLOYING: "The deploy call"}


def publish_pending(ctx: Context, record: Deployment) -> Deployment:
    """Publish the notification of the record's current state and mark it as sent.

    A failure to publish is logged, not raised: the record stays pending and reconcile
    sends it later, so a Pub/Sub outage never loses a state change.
    """
    try:
        ctx.events.publish(record)
    except Exception as exc:  # the notification is retried by reconcile
        log.warning("notification not published yet: %s", exc, extra={"deployment_id": record.id})
        return record
    marked = ctx.store.replace(replace(record, published_sequence=record.event_sequence))
    return marked or record


def commit(ctx: Context, record: Deployment) -> Deployment | None:
    """Write `record` if the stored one is unchanged since it was read (its etag), and publish
    the notification when its state changed. None means another worker got there first.

    A record the store cannot hold (RecordTooLarge) is not written; the stored one ends
    REJECTED or FAILED with that error instead."""
    try:
        written = ctx.store.replace(record)
    except RecordTooLarge as exc:
        written = _end_instead(ctx, record, exc)
    if written is None:
        log.info(
            "lost a race: the record changed meanwhile",
            extra={"deployment_id": record.id, "state": str(record.state)},
        )
        return None
    if written.event_pending:
        log.info(
            "deployment is %s",
            written.state,
            extra={"deployment_id": written.id, "state": str(written.state)},
        )
        written = publish_pending(ctx, written)
    return written


def _end_instead(ctx: Context, record: Deployment, exc: RecordTooLarge) -> Deployment | None:
    """The stored record (if `record` was read from it) ended REJECTED, or FAILED where its
    state allows no rejection, with `exc` as its error: nothing large is added to it."""
    stored = ctx.store.get(record.id)
    if stored is None or stored.etag != record.etag:
        return None
    end = next((s for s in (State.REJECTED, State.FAILED) if s in TRANSITIONS[stored.state]), None)
    if end is None:
        raise exc
    log.error("%s; the deployment ends %s", exc.message, end, extra={"deployment_id": record.id})
    return ctx.store.replace(
        advance(stored, end, ctx.clock(), exc.code, error=exc.as_dict(), lease_expires_at=None)
    )


def create(ctx: Context, record: Deployment) -> Deployment | None:
    """Create-if-absent and notify; return the stored record (ours, or the one already there)."""
    if ctx.store.create(record):
        log.info("upload detected", extra={"deployment_id": record.id, "folder": record.folder})
        stored = ctx.store.get(record.id)
        return publish_pending(ctx, stored) if stored else None
    return ctx.store.get(record.id)


def claim(ctx: Context, record: Deployment, state: State) -> Deployment | None:
    """Claim the work of `state` (VALIDATING or DEPLOYING) with a lease: move the record into
    it, or take over a claim in it whose lease expired, counting the attempt. When max_attempts
    claims never finished, the record ends FAILED instead. None: another worker got there first.
    """
    now = ctx.clock()
    lease = Deployment.lease_end(now, ctx.settings.lease_seconds)
    if record.state is not state:
        return commit(ctx, advance(record, state, now, lease_expires_at=lease, claims=1))
    if record.claims >= ctx.settings.max_attempts:
        unfinished = ModeldropError(
            f"{WORK[state]} was started {record.claims} times; the last attempt stopped "
            "without a result (the function crashed, ran out of memory or timed out).",
            "Look the deployment id up in the function's logs; validate the folder locally "
            "with `modeldrop validate PATH`, then upload it again.",
            code="ATTEMPTS_EXHAUSTED",
        )
        return fail(ctx, record, unfinished)
    return commit(ctx, update(record, now, lease_expires_at=lease, claims=record.claims + 1))


def retry_later(ctx: Context, record: Deployment, exc: ModeldropError) -> Deployment:
    """A retryable failure of claimed work: give the claim back with the error recorded and
    raise `exc`, so the event is delivered again (reconcile retries it too). At the last
    attempt, end the record FAILED with that error instead, and return it."""
    if record.claims >= ctx.settings.max_attempts:
        again = f"It failed {record.claims} times in a row; fix the cause, then upload again."
        gave_up = ModeldropError(exc.message, f"{exc.hint} {again}".lstrip(), code=exc.code)
        return fail(ctx, record, gave_up) or record
    log.warning(
        "attempt %d of %d failed, to be retried: %s",
        record.claims,
        ctx.settings.max_attempts,
        exc,
        extra={"deployment_id": record.id},
    )
    now = ctx.clock()
    commit(ctx, update(record, now, error=exc.as_dict(), lease_expires_at=now))
    raise exc


def fail(ctx: Context, record: Deployment, exc: ModeldropError) -> Deployment | None:
    """End the record FAILED with `exc` as its error (None: another worker changed it first)."""
    failed = advance(
        record, State.FAILED, ctx.clock(), exc.code, error=exc.as_dict(), lease_expires_at=None
    )
    return commit(ctx, failed)


def hand_over(ctx: Context, record: Deployment) -> None:
    """Queue a record for the deploy function: VALIDATED, or DEPLOYING between two placement
    attempts. A lost message is not lost work: reconcile takes over records left waiting."""
    try:
        ctx.queue.publish_validated(record.id)
    except Exception as exc:  # reconcile picks up VALIDATED and unstarted DEPLOYING records
        log.warning("not queued for deploy yet: %s", exc, extra={"deployment_id": record.id})
