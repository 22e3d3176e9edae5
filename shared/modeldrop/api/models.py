"""The model-name routes: which revision a name answers with, its status with its revisions,
rollback. A name answers only from its serving revision (service.revisions)."""

from __future__ import annotations

from typing import Any

from modeldrop.api import lookup
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError, no_model
from modeldrop.api.status import refreshed
from modeldrop.api.views import status_body
from modeldrop.domain.deployment import ActionRefused, Deployment, State
from modeldrop.service import revisions

REVISIONS_SHOWN = 20


def serving_record(ctx: ApiContext, name: str) -> Deployment | None:
    """The DEPLOYED record the name answers with; None for a name without any record. Raises a
    409 NOT_DEPLOYED ApiError when its serving revision does not answer now.

    The pointer is reused for POINTER_SECONDS per instance, so a promotion or a rollback takes
    effect within a second everywhere (the revision it replaced answers meanwhile: it keeps its
    endpoint longer); the record it names comes from the per-instance cache of DEPLOYED records.
    Before the name's first promotion is recorded (a crash between DEPLOYED and the pointer;
    reconcile finishes it), its newest DEPLOYED revision answers."""
    pointer = ctx.pointers.get(name) or ctx.store.get_pointer(name)
    if pointer is None:
        page, _ = ctx.store.list_page(states=(State.DEPLOYED,), model=name, limit=1)
        if page:
            return page[0]
        newest = ctx.store.latest_for_model(name)
        return lookup.require_deployed(newest) if newest else None
    ctx.pointers.put(name, pointer)
    cache = ctx.deployed
    if cached := cache.get(pointer.serving):
        return cached
    record = ctx.store.get(pointer.serving)
    if record is None:
        raise ApiError(
            f"The serving revision {pointer.serving} of model {name} was deleted.",
            "Upload the folder again, or roll back: POST /v1/models/{name}:rollback.",
            code="NOT_DEPLOYED",
            status=409,
        )
    return cache.put(record.id, lookup.require_deployed(record))


def model_status(ctx: ApiContext, name: str, base_url: str) -> dict[str, Any]:
    """The newest revision's status, plus `serving` (the deployment id the name points at) and
    `revisions` ({id, revision, state}, newest first, at most REVISIONS_SHOWN)."""
    record = ctx.store.latest_for_model(name)
    if record is None:
        raise no_model(name)
    body = status_body(refreshed(ctx, record), base_url, ctx.clock())
    pointer = ctx.store.get_pointer(name)
    if pointer:
        ctx.pointers.put(name, pointer)
    page, _ = ctx.store.list_page(model=name, limit=REVISIONS_SHOWN)
    ordered = sorted(page, key=lambda d: (d.revision, d.created_at, d.id), reverse=True)
    body["serving"] = pointer.serving if pointer else None
    body["revisions"] = [
        {"id": d.id, "revision": d.revision, "state": str(d.state)} for d in ordered
    ]
    return body


def rollback(ctx: ApiContext, name: str, base_url: str) -> dict[str, Any]:
    """POST /v1/models/{name}:rollback: the name points back at its previous revision; the
    answer is the model's status afterwards. 409 with the reason when it cannot."""
    if ctx.store.latest_for_model(name) is None:
        raise no_model(name)
    try:
        ctx.pointers.put(name, revisions.rollback(ctx, name))  # this instance: at once
    except ActionRefused as exc:
        raise ApiError(exc.message, exc.hint, code=exc.code, status=409) from None
    return model_status(ctx, name, base_url)
