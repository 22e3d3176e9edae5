"""GET /v1/costs: what the running deployments cost, each and in total (estimates)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from modeldrop.api.context import ApiContext
from modeldrop.domain import cost
from modeldrop.domain.deployment import Deployment

MAX_RUNNING = 1_000  # records listed; more running deployments than this is reported, not read


def running(ctx: ApiContext) -> tuple[list[Deployment], bool]:
    """The records holding (or about to hold) a machine, and whether there were more."""
    found: list[Deployment] = []
    token = None
    while len(found) < MAX_RUNNING:
        page, token = ctx.store.list_page(states=cost.RUNNING, limit=100, page_token=token)
        found += page
        if not token:
            return found[:MAX_RUNNING], False
    return found[:MAX_RUNNING], True


def costs(ctx: ApiContext) -> dict[str, Any]:
    """Each running deployment's hourly and accrued estimate, and the totals."""
    now = ctx.clock()
    records, truncated = running(ctx)
    rows = []
    hourly_total, accrued_total = Fraction(0), Fraction(0)
    for record in records:
        hourly, accrued = cost.hourly_usd(record), cost.accrued_usd(record, now)
        hourly_total += hourly or 0
        accrued_total += accrued
        rows.append(
            {
                "id": record.id,
                "model": record.model,
                "revision": record.revision,
                "state": str(record.state),
                "region": record.region,
                "spot": bool((record.placement or {}).get("spot")),
                "hourly_usd": cost.money(hourly),
                "accrued_usd": cost.money(accrued),
            }
        )
    return {
        "deployments": rows,
        "total_hourly_usd": cost.money(hourly_total),
        "total_accrued_usd": cost.money(accrued_total),
        "truncated": truncated,
        "estimate": cost.ESTIMATE_NOTE,
    }
