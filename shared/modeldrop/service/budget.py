"""The budget cap: a deploy waits while it would take the running total over
MODELDROP_MAX_HOURLY_USD.

Checked before a VALIDATED deployment is claimed for its deploy: the running deployments'
hourly estimates (domain.cost), plus the holds of deployments being admitted at the same time,
plus this one's cheapest candidate. The older revisions of its own model name do not count: it
replaces them, and they run beside it only for the retire grace. A blocked record stays
VALIDATED with `blocked` saying why (one notification, type ...deployment.blocked), and
reconcile hands it to the deploy function again whenever its lease lapses, so it deploys by
itself once running endpoints are retired, deleted or idled; DELETE cancels it.

Admission is optimistic, without a lock: a record first writes its hold (`budget_hold`, with a
lease), then checks the total. Of two admissions at once, each check comes after its own
hold is written, so at least the later one sees the other's hold: they never both pass when
together they would go over the cap (both may wait a lease; then they try again).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from fractions import Fraction
from typing import Any, NamedTuple

from modeldrop import logs
from modeldrop.domain import cost, revisions
from modeldrop.domain.deployment import Deployment, State, update
from modeldrop.errors import ModeldropError
from modeldrop.service.context import Context
from modeldrop.service.placement import catalog_ladder
from modeldrop.service.records import commit

log = logs.get("budget")
MAX_LISTED = 1_000  # records read per state list; beyond that the sum is of the first ones


class Admission(NamedTuple):
    """The record as an admission left it (None: another worker changed it first), and
    whether it may be claimed for its deploy now."""

    record: Deployment | None
    admitted: bool


def listed(ctx: Context, states: tuple[State, ...]) -> tuple[list[Deployment], bool]:
    """The records in `states` (at most MAX_LISTED), and whether there were more."""
    found: list[Deployment] = []
    token = None
    while len(found) < MAX_LISTED:
        page, token = ctx.store.list_page(states=states, limit=100, page_token=token)
        found += page
        if not token:
            return found[:MAX_LISTED], False
    return found[:MAX_LISTED], True


def counts(other: Deployment, record: Deployment) -> bool:
    """Whether a running record counts against `record`'s deploy: not itself, and not an older
    DEPLOYED revision of the same model name, which `record` replaces (it is retired once
    `record` serves, so a re-upload under a tight cap is not blocked by its own predecessor)."""
    if other.id == record.id:
        return False
    replaced = other.model == record.model and other.state is State.DEPLOYED
    return not (replaced and revisions.newer(record, other))


def needed(ctx: Context, record: Deployment) -> Fraction | None:
    """The least the record's deploy costs an hour: its cheapest candidate times its minimum
    replicas (None when nothing fits: that deploy ends NO_CAPACITY, which costs nothing)."""
    ladder = catalog_ladder(ctx, record)
    if not ladder:
        return None
    return ladder[0].hourly_usd * record.overrides.get("replicas", {}).get("min", 1)


def committed(ctx: Context, record: Deployment) -> Fraction:
    """The hourly estimate spoken for against `record`: the running deployments that count, and
    the live holds of the other VALIDATED ones being admitted."""
    running, _ = listed(ctx, cost.RUNNING)
    total = sum(
        (cost.hourly_usd(r) or Fraction(0) for r in running if counts(r, record)), Fraction(0)
    )
    now = ctx.clock()
    admitting, _ = listed(ctx, (State.VALIDATED,))
    for other in admitting:
        if other.id != record.id and other.budget_hold and not other.lease_expired(now):
            total += _held(other)
    return total


def _held(record: Deployment) -> Fraction:
    """The record's hold as a number; a hold that is not one (a hand-edited document) counts
    as the most a hold can be, so it can never let a deploy through that should wait."""
    try:
        value = Fraction(str(record.budget_hold)[:40])
    except (ValueError, ZeroDivisionError):
        log.warning(
            "unreadable budget hold: counted over any cap until its lease lapses",
            extra={"deployment_id": record.id},
        )
        return Fraction(10**9)
    return max(value, Fraction(0))


def over_budget(ctx: Context, record: Deployment) -> dict[str, Any] | None:
    """Why the record may not deploy now (BUDGET_EXCEEDED), or None."""
    cap = ctx.settings.max_hourly_usd
    need = needed(ctx, record) if cap is not None else None
    if cap is None or need is None:
        return None
    total = committed(ctx, record)
    if total + need <= cap:
        return None
    error = ModeldropError(
        f"Deploying would take the estimated hourly cost of running deployments to "
        f"${float(total + need):.2f}/h, over MODELDROP_MAX_HOURLY_USD (${float(cap):.2f}/h): "
        f"${float(total):.2f}/h run now, and this one needs at least ${float(need):.2f}/h.",
        "It deploys by itself once running deployments are deleted, retired or idled (GET "
        "/v1/costs lists them); DELETE cancels it; or raise MODELDROP_MAX_HOURLY_USD.",
        code="BUDGET_EXCEEDED",
    )
    return {
        **error.as_dict(),
        "running_hourly_usd": cost.money(total),
        "needed_hourly_usd": cost.money(need),
        "cap": cost.money(cap),
    }


def hold(ctx: Context, record: Deployment) -> Deployment | None:
    """Write the record's hold on its cheapest estimate, with a lease (other admissions count
    it until the lease lapses or the record moves on); None when another worker changed the
    record first."""
    now = ctx.clock()
    need = needed(ctx, record) or Fraction(0)
    return commit(
        ctx,
        update(
            record,
            now,
            budget_hold=str(need),  # exact: "8129/10000"
            lease_expires_at=Deployment.lease_end(now, ctx.settings.lease_seconds),
        ),
    )


def admit(ctx: Context, record: Deployment) -> Admission:
    """Check a VALIDATED record against the cap: admitted (holding its estimate until it is
    claimed or its lease lapses), or blocked. Without a cap, admitted as it is."""
    if ctx.settings.max_hourly_usd is None:
        return Admission(record, True)
    held = hold(ctx, record)
    if held is None:
        return Admission(None, False)
    blocked = over_budget(ctx, held)  # after its hold: an admission at once sees one of them
    if blocked:
        return Admission(block(ctx, held, blocked), False)
    return Admission(held, True)


def block(ctx: Context, record: Deployment, blocked: dict[str, Any]) -> Deployment:
    """Record the block (announced once: a new block is a notification), and leave the
    record for reconcile to hand over again when its lease lapses: after 1 to 1.5 leases, a
    share derived from its id, so admissions that collided do not try again in step."""
    now = ctx.clock()
    share = int(hashlib.sha256(record.id.encode()).hexdigest()[:4], 16) / 0x20000  # [0, 0.5)
    lease = Deployment.lease_end(now, ctx.settings.lease_seconds * (1 + share))
    announce = record.blocked is None
    # the announcement's notification number (its CloudEvent id is <id>-<event>), kept while
    # the record stays blocked
    event = record.event_sequence + 1 if announce else (record.blocked or {}).get("event")
    blocked = {**blocked, "event": event}
    changed = update(record, now, blocked=blocked, budget_hold=None, lease_expires_at=lease)
    if announce:
        log.info("deploy blocked by the budget cap", extra={"deployment_id": record.id})
        changed = replace(changed, event_sequence=record.event_sequence + 1)
    return commit(ctx, changed) or record
