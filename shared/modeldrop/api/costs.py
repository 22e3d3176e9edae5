"""GET /v1/costs: what the running deployments cost, each and in total (estimates)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from modeldrop.api.context import ApiContext
from modeldrop.domain import cost
from modeldrop.service import budget


def costs(ctx: ApiContext) -> dict[str, Any]:
    """Each running deployment's hourly and accrued estimate, and the totals."""
    now = ctx.clock()
    records, truncated = budget.listed(ctx, cost.RUNNING)
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
