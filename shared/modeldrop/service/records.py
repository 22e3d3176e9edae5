"""Writing deployment records: preconditioned writes, then exactly one notification each."""

from __future__ import annotations

from dataclasses import replace

from modeldrop import logs
from modeldrop.domain.deployment import Deployment
from modeldrop.service.context import Context

log = logs.get("records")


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
    the notification when its state changed. None means another worker got there first."""
    written = ctx.store.replace(record)
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


def create(ctx: Context, record: Deployment) -> Deployment | None:
    """Create-if-absent and notify; return the stored record (ours, or the one already there)."""
    if ctx.store.create(record):
        log.info("upload detected", extra={"deployment_id": record.id, "folder": record.folder})
        stored = ctx.store.get(record.id)
        return publish_pending(ctx, stored) if stored else None
    return ctx.store.get(record.id)
