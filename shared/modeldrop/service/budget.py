"""The budget cap: a deploy waits while it would take the running total over
MODELDROP_MAX_HOURLY_USD.

Checked before a VALIDATED deployment is claimed for its deploy: the running deployments'
hourly estimates (domain.cost) plus this one's cheapest candidate. The older revisions of its
own model name do not count: it replaces them, and they run beside it only for the retire
grace. A blocked record stays VALIDATED with `blocked` saying why (one notification, type
...deployment.blocked), and reconcile hands it to the deploy function again whenever its lease
lapses, so it deploys by itself once running endpoints are retired, deleted or idled; DELETE
cancels it. Estimates, and checked without a lock: two deployments passing the check at the
same moment may together go over the cap.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

from modeldrop import logs
from modeldrop.domain import cost, revisions
from modeldrop.domain.deployment import Deployment, State, update
from modeldrop.errors import ModeldropError
from modeldrop.service.context import Context
from modeldrop.service.placement import catalog_ladder
from modeldrop.service.records import commit

log = logs.get("budget")
MAX_RUNNING = 1_000  # running records read; beyond that the sum is of the first ones


def running(ctx: Context) -> tuple[list[Deployment], bool]:
    """The records holding (or about to hold) a machine, and whether there were more."""
    found: list[Deployment] = []
    token = None
    while len(found) < MAX_RUNNING:
        page, token = ctx.store.list_page(states=cost.RUNNING, limit=100, page_token=token)
        found += page
        if not token:
            return found[:MAX_RUNNING], False
    return found[:MAX_RUNNING], True


def counts(other: Deployment, record: Deployment) -> bool:
    """Whether a running record counts against `record`'s deploy: not itself, and not an older
    DEPLOYED revision of the same model name, which `record` replaces (it is retired once
    `record` serves, so a re-upload under a tight cap is not blocked by its own predecessor)."""
    if other.id == record.id:
        return False
    replaced = other.model == record.model and other.state is State.DEPLOYED
    return not (replaced and revisions.newer(record, other))


def over_budget(ctx: Context, record: Deployment) -> dict[str, Any] | None:
    """Why the record may not deploy now (BUDGET_EXCEEDED), or None."""
    cap = ctx.settings.max_hourly_usd
    if cap is None:
        return None
    ladder = catalog_ladder(ctx, record)
    if not ladder:
        return None  # nothing fits: the deploy ends NO_CAPACITY, which costs nothing
    replicas = record.overrides.get("replicas", {}).get("min", 1)
    needed = ladder[0].hourly_usd * replicas
    others, _ = running(ctx)
    total = sum(
        (cost.hourly_usd(r) or Fraction(0) for r in others if counts(r, record)), Fraction(0)
    )
    if total + needed <= cap:
        return None
    error = ModeldropError(
        f"Deploying would take the estimated hourly cost of running deployments to "
        f"${float(total + needed):.2f}/h, over MODELDROP_MAX_HOURLY_USD (${float(cap):.2f}/h): "
        f"${float(total):.2f}/h run now, and this one needs at least ${float(needed):.2f}/h.",
        "It deploys by itself once running deployments are deleted, retired or idled (GET "
        "/v1/costs lists them); DELETE cancels it; or raise MODELDROP_MAX_HOURLY_USD.",
        code="BUDGET_EXCEEDED",
    )
    return {
        **error.as_dict(),
        "running_hourly_usd": cost.money(total),
        "needed_hourly_usd": cost.money(needed),
        "cap": cost.money(cap),
    }


def block(ctx: Context, record: Deployment, blocked: dict[str, Any]) -> Deployment:
    """Record the block (announced once: a new block is a notification), and leave the
    record for reconcile to hand over again when its lease lapses."""
    now = ctx.clock()
    lease = Deployment.lease_end(now, ctx.settings.lease_seconds)
    announce = record.blocked is None
    changed = update(record, now, blocked=blocked, lease_expires_at=lease)
    if announce:
        log.info("deploy blocked by the budget cap", extra={"deployment_id": record.id})
        changed = replace(changed, event_sequence=record.event_sequence + 1)
    return commit(ctx, changed) or record
