"""Revisions of a model name: which one serves it, and when the others go (pure: no I/O).

A model name points at one deployment, its serving revision (`ModelPointer`). A revision that
reaches DEPLOYED takes the name over when it is newer than the serving one, or when the serving
one no longer answers; the revision it replaces stays up for a grace period, then is retired.
Rollback points the name back at the revision it replaced while that one is still DEPLOYED.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from modeldrop.domain.deployment import Deployment, State

# a replaced revision keeps its endpoint at least this long, whatever the grace setting: longer
# than the api reuses a model's pointer (api.context.POINTER_SECONDS)
MIN_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class ModelPointer:
    """The serving revision of a model name. `previous` is the revision it replaced (rollback's
    target); `changed_at` when `serving` last changed (the replaced revision's grace counts from
    it). `etag` belongs to the store, as on Deployment."""

    name: str
    serving: str
    previous: str | None
    changed_at: datetime
    etag: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "serving": self.serving,
            "previous": self.previous,
            "changed_at": self.changed_at,
        }


def newer(record: Deployment, than: Deployment) -> bool:
    """Whether `record` is a later upload than `than` (revision, then creation, then id)."""
    return (record.revision, record.created_at, record.id) > (
        than.revision,
        than.created_at,
        than.id,
    )


def takes_over(record: Deployment, serving: Deployment | None) -> bool:
    """Whether a DEPLOYED `record` becomes the serving revision in place of `serving` (the
    record the name points at now; None when it is gone)."""
    if serving is None or serving.id == record.id:
        return True
    return serving.state is not State.DEPLOYED or newer(record, serving)


def promoted(pointer: ModelPointer | None, record: Deployment, at: datetime) -> ModelPointer:
    """The pointer after `record` took the name over."""
    if pointer is None:
        return ModelPointer(record.model, record.id, None, at)
    if pointer.serving == record.id:
        return pointer
    return replace(pointer, serving=record.id, previous=pointer.serving, changed_at=at)


def rolled_back(pointer: ModelPointer, at: datetime) -> ModelPointer:
    """The pointer pointing back at the revision it replaced (which the caller checked is
    DEPLOYED); the revision rolled back from becomes `previous`."""
    if pointer.previous is None:
        raise ValueError(f"model {pointer.name} has no previous revision to roll back to")
    return replace(pointer, serving=pointer.previous, previous=pointer.serving, changed_at=at)


def deployed_at(record: Deployment) -> datetime:
    """When the record last became DEPLOYED (its update time if its history no longer says)."""
    times = [t.at for t in record.history if t.state is State.DEPLOYED]
    return times[-1] if times else record.updated_at


def retire_due(
    record: Deployment, pointer: ModelPointer | None, now: datetime, grace_seconds: float
) -> bool:
    """Whether a DEPLOYED revision that does not serve its name has had its grace period (at
    least MIN_GRACE_SECONDS; from when it stopped serving, or from its DEPLOYED time if it never
    served)."""
    if record.state is not State.DEPLOYED or record.promotion_pending:
        return False
    if pointer is None or pointer.serving == record.id:
        return False
    since = max(pointer.changed_at, deployed_at(record))
    return now - since >= timedelta(seconds=max(grace_seconds, MIN_GRACE_SECONDS))


def idle_seconds(record: Deployment, default: int) -> int:
    """The record's idle limit: modeldrop.yaml's idle_undeploy_after_seconds, else `default`
    (MODELDROP_IDLE_UNDEPLOY_SECONDS); 0 means never."""
    value = record.overrides.get("idle_undeploy_after_seconds", default)
    return value if isinstance(value, int) and value >= 0 else default


def idle_due(record: Deployment, now: datetime, default: int) -> bool:
    """Whether a DEPLOYED record has had no proxied request for its idle limit (counted from
    its DEPLOYED time before its first one)."""
    limit = idle_seconds(record, default)
    if record.state is not State.DEPLOYED or limit == 0:
        return False
    last = max(record.last_used_at or deployed_at(record), deployed_at(record))
    return now - last >= timedelta(seconds=limit)
