"""A deployment's last use, for idle undeploy: written by the api when it proxies a request, at
most once per interval per instance (never a Firestore write per request)."""

from __future__ import annotations

from dataclasses import replace

from modeldrop import logs
from modeldrop.api.context import USE_SECONDS, ApiContext
from modeldrop.domain.deployment import Deployment, State
from modeldrop.domain.revisions import idle_seconds
from modeldrop.service.context import describe

log = logs.get("api.usage")
MIN_INTERVAL = 1.0


def interval(record: Deployment, default_idle: int) -> float:
    """How often the record's last use is written: USE_SECONDS, or a tenth of a shorter idle
    limit (at least MIN_INTERVAL), so reconcile never sees a used deployment as idle."""
    limit = idle_seconds(record, default_idle)
    return USE_SECONDS if limit == 0 else max(MIN_INTERVAL, min(USE_SECONDS, limit / 10))


def record_use(ctx: ApiContext, record: Deployment) -> None:
    """Note that a request is being proxied to `record` (throttled). A failed write is logged:
    the next request writes it."""
    if not ctx.uses.allow(record.id, interval(record, ctx.settings.idle_undeploy_seconds)):
        return
    try:
        fresh = ctx.store.get(record.id)
        if fresh is not None and fresh.state is State.DEPLOYED:
            ctx.store.replace(replace(fresh, last_used_at=ctx.clock()))
    except Exception as exc:  # a lost race or an outage: the next use writes it
        log.warning("last use not recorded: %s", describe(exc), extra={"deployment_id": record.id})
