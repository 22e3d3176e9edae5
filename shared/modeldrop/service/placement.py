"""Placement: land the model on the first candidate with capacity, and say what was tried.

A claimed DEPLOYING record is planned once (the catalog's ladder, screened by RecommendSpec in
every allowed region), then attempted candidate by candidate. An attempt that fails for
capacity (no quota, stockout, not offered) is recorded in `attempts`, its endpoint deleted
("clearing": `placement` None, `endpoint` the failed attempt's), and the next one starts;
when none is left the record ends FAILED with NO_CAPACITY. Every step is one preconditioned
commit, so a crash anywhere resumes from the record: an attempt keeps its number, and with it
its endpoint id, until it has ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from modeldrop import catalog, logs
from modeldrop.domain.deployment import Deployment, State, advance, update
from modeldrop.domain.findings import MachineSpec, excerpt
from modeldrop.errors import ModeldropError
from modeldrop.service import private_link
from modeldrop.service.context import Context, describe
from modeldrop.service.ports import DeployError, Recommendation
from modeldrop.service.records import commit
from modeldrop.service.serving_log import failure_logs
from modeldrop.validation.placement import Candidate, ladder

log = logs.get("placement")


def plan(ctx: Context, record: Deployment) -> Deployment | None:
    """Record the candidates of a claimed record (once), screened by RecommendSpec; FAILED with
    NO_CAPACITY when none is left. None: someone else changed the record first."""
    full = catalog_ladder(ctx, record)
    offers, regions = _recommendations(ctx, record, full)
    kept, dropped = screen(full, offers)
    base_models = [r.base_model for found in offers.values() for r in found if r.base_model]
    preflight = {
        "source": "recommend_spec" if offers else "catalog",
        "regions": regions,
        "base_model": base_models[0] if base_models else None,
        "dropped": dropped,
        "cheapest": full[0].as_dict() if full else None,
    }
    planned = update(
        record,
        ctx.clock(),
        candidates=tuple(c.as_dict() for c in kept),
        preflight=preflight,
        blocked=None,  # the budget let it through
    )
    if not kept:
        return commit(ctx, _failed(planned, ctx.clock(), no_capacity(planned)))
    return commit(ctx, planned)


def catalog_ladder(ctx: Context, record: Deployment) -> list[Candidate]:
    """Every candidate the catalog offers for the record's validated folder, first one first."""
    validation = record.validation or {}
    weight_bytes = validation.get("weight_bytes")
    if not isinstance(weight_bytes, int):
        return []
    default = ctx.settings.default_machine_spec
    # the operator's default machine is pinned when validation chose it (it fits the model)
    pinned = MachineSpec(**default) if default and record.machine == default else None
    heads = validation.get("attention_heads")
    # a PSC endpoint is regional: a private deployment stays in the api's region, whose VPC
    # egress reaches it (global access to Vertex AI's service attachments is not verified)
    regions = (ctx.settings.region,) if private_link.is_private(ctx, record) else None
    return ladder(
        weight_bytes,
        heads if isinstance(heads, int) else None,
        record.overrides,
        regions or ctx.settings.regions,
        pinned,
    )


def _recommendations(
    ctx: Context, record: Deployment, full: list[Candidate]
) -> tuple[dict[str, list[Recommendation]], list[dict[str, Any]]]:
    """RecommendSpec's offers per region it answered for, and one line per region asked."""
    offers: dict[str, list[Recommendation]] = {}
    regions: list[dict[str, Any]] = []
    for region in dict.fromkeys(c.region for c in full):
        try:
            found = ctx.deployer.recommend_spec(record.gcs_uri, region)
        except Exception as exc:  # any failure: the catalog's candidates apply in the region
            error = exc if isinstance(exc, ModeldropError) else None
            regions.append(
                {
                    "region": region,
                    "checked": False,
                    "code": error.code if error else "RECOMMEND_SPEC_FAILED",
                    "message": excerpt(error.message if error else describe(exc)),
                }
            )
            log.warning(
                "RecommendSpec in %s failed; using the catalog: %s",
                region,
                describe(exc),
                extra={"deployment_id": record.id},
            )
            continue
        offers[region] = [r for r in found if (r.region or region) == region]
        regions.append({"region": region, "checked": True, "code": None, "message": None})
    return offers, regions


def screen(
    full: Iterable[Candidate], offers: dict[str, list[Recommendation]]
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """The candidates RecommendSpec leaves, and the ones it rules out with the reason.

    Only regions RecommendSpec answered for are screened. A candidate is `no_quota` when its
    machine is offered there only without the user's quota (spot variants are kept: their
    quota is a separate preemptible one the call does not report), `unavailable` when the
    machine is offered in some region but not in this one (with check_machine_availability,
    RecommendSpec lists a machine only where it is available). A machine RecommendSpec never
    mentions is kept: the call recommends, it does not list every machine that would work.
    """
    mentioned = {_spec_key(r.machine_spec) for found in offers.values() for r in found}
    kept: list[Candidate] = []
    dropped: list[dict[str, Any]] = []
    for candidate in full:
        found = offers.get(candidate.region)
        key = _spec_key(candidate.machine_spec.as_dict())
        same = [r for r in found or () if _spec_key(r.machine_spec) == key]
        if found is not None and same and all(r.has_quota is False for r in same):
            reason = None if candidate.spot else "no_quota"
        elif found is not None and not same and key in mentioned:
            reason = "unavailable"
        else:
            reason = None
        if reason is None:
            kept.append(candidate)
        else:
            dropped.append({**candidate.as_dict(), "outcome": reason})
    return kept, dropped


def _spec_key(spec: dict[str, Any]) -> tuple[str, str, int]:
    return (
        str(spec.get("machine_type", "")),
        str(spec.get("accelerator_type", "")),
        int(spec.get("accelerator_count") or 0),
    )


def next_placement(ctx: Context, record: Deployment) -> Deployment | None:
    """Record the next candidate as the attempt under way (a claimed record between attempts);
    FAILED with NO_CAPACITY when every candidate has been tried."""
    candidates = record.candidates or ()
    number = len(record.attempts) + 1
    if number > len(candidates):
        return commit(ctx, _failed(record, ctx.clock(), no_capacity(record)))
    placement = {"attempt": number, **candidates[number - 1]}
    log.info(
        "attempt %d of %d: %s %s%s",
        number,
        len(candidates),
        placement["region"],
        placement["machine_spec"]["machine_type"],
        " (spot)" if placement["spot"] else "",
        extra={"deployment_id": record.id},
    )
    now = ctx.clock()
    lease = Deployment.lease_end(now, ctx.settings.lease_seconds)  # the Deploy call's own lease
    chosen = update(
        record, now, placement=placement, operation=None, endpoint=None, lease_expires_at=lease
    )
    return commit(ctx, chosen)


def attempt_entry(
    record: Deployment, outcome: str, at: datetime, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `attempts` line of the current attempt ending with `outcome`."""
    placement = record.placement or {}
    return {
        "attempt": placement.get("attempt", record.attempt),
        "region": placement.get("region"),
        "machine_spec": placement.get("machine_spec"),
        "spot": placement.get("spot", False),
        "hourly_usd": placement.get("hourly_usd"),
        "outcome": outcome,
        "code": error["code"] if error else None,
        "message": excerpt(error["message"]) if error else None,
        "at": at,
    }


def end_attempt(ctx: Context, record: Deployment, error: DeployError) -> Deployment | None:
    """The current attempt failed: for capacity, record it and delete its endpoint (then the
    record is ready for the next one); for anything else, end FAILED as before."""
    now = ctx.clock()
    details: dict[str, Any] = error.as_dict()
    if error.capacity is None:
        details["logs"] = failure_logs(ctx, record)
        entry = attempt_entry(record, "error", now, details)
        failed = advance(
            record,
            State.FAILED,
            now,
            error.code,
            error=details,
            attempts=(*record.attempts, entry),
            lease_expires_at=None,
        )
        return commit(ctx, failed)
    log.warning(
        "attempt %d failed for capacity (%s): %s",
        record.attempt,
        error.capacity,
        error.code,
        extra={"deployment_id": record.id},
    )
    clearing = update(
        record,
        now,
        attempts=(*record.attempts, attempt_entry(record, error.capacity, now, details)),
        endpoint=record.attempt_endpoint(ctx.settings.project, ctx.settings.region),
        placement=None,
        operation=None,
        error=details,
        claims=0,
        lease_expires_at=None,
    )
    ended = commit(ctx, clearing)
    return clear(ctx, ended) if ended else None


def clearing(record: Deployment) -> bool:
    """Whether the record is deleting the endpoint of an attempt that failed for capacity."""
    return (
        record.state is State.DEPLOYING
        and record.placement is None
        and bool(record.attempts)
        and record.endpoint is not None
    )


def clear(ctx: Context, record: Deployment) -> Deployment | None:
    """One step of deleting the failed attempt's endpoint; once it is gone, the record is ready
    for its next attempt (or FAILED with NO_CAPACITY when none is left)."""
    if record.endpoint and not private_link.remove_endpoint(ctx, record, record.endpoint):
        return record  # its model is still being undeployed: the next poll goes on
    cleared = update(record, ctx.clock(), endpoint=None)
    if len(record.attempts) >= len(record.candidates or ()):
        return commit(ctx, _failed(cleared, ctx.clock(), no_capacity(cleared)))
    return commit(ctx, cleared)


def between_attempts(record: Deployment) -> bool:
    """Whether the record waits for its next attempt to start (its last endpoint is gone)."""
    return (
        record.state is State.DEPLOYING
        and record.placement is None
        and not record.endpoint
        and not record.operation
        and bool(record.attempts)
    )


def landed(record: Deployment, at: datetime) -> tuple[dict[str, Any], ...]:
    """The attempts with the current one recorded as deployed."""
    return (*record.attempts, attempt_entry(record, "deployed", at))


def _failed(record: Deployment, at: datetime, error: ModeldropError) -> Deployment:
    return advance(
        record, State.FAILED, at, error.code, error=error.as_dict(), lease_expires_at=None
    )


def no_capacity(record: Deployment) -> ModeldropError:
    """NO_CAPACITY: what was tried, and per region the quota to request or the stock problem,
    with the cheapest machine that would fit."""
    preflight = record.preflight or {}
    ended = [*preflight.get("dropped", []), *record.attempts]
    cheapest = preflight.get("cheapest")
    if cheapest is None:
        return ModeldropError(
            "No machine in the catalog fits this model within the allowed regions and the "
            "placement limits of modeldrop.yaml.",
            "Allow more regions (MODELDROP_REGIONS, placement.regions), accelerators or a higher "
            "placement.max_hourly_usd; `modeldrop validate PATH --regions R1,R2` prints the "
            "candidates offline.",
            code="NO_CAPACITY",
        )
    regions = list(dict.fromkeys(str(e["region"]) for e in ended))
    tried = len(record.attempts)
    ruled_out = len(preflight.get("dropped", []))
    message = (
        f"No placement has capacity: {tried} deploy attempt(s) and {ruled_out} candidate(s) "
        f"ruled out by RecommendSpec, in {', '.join(regions) or 'no region'}."
    )
    problems = [_region_problem(r, [e for e in ended if e["region"] == r]) for r in regions]
    spec = cheapest["machine_spec"]
    fits = (
        f"The cheapest machine that fits is {spec['machine_type']} with "
        f"{spec['accelerator_count']} x {spec['accelerator_type']} "
        f"(about ${cheapest['hourly_usd']:.2f}/h in {cheapest['region']})."
    )
    return ModeldropError(
        message,
        " ".join([*problems, fits, "Then upload the folder again."]),
        code="NO_CAPACITY",
    )


def _region_problem(region: str, ended: list[dict[str, Any]]) -> str:
    """One region's reasons, e.g. "us-central1: request serving quota aiplatform....gpus"."""

    def accelerators(outcome: str) -> list[str]:
        named = (
            str(e["machine_spec"]["accelerator_type"]) for e in ended if e["outcome"] == outcome
        )
        return list(dict.fromkeys(named))

    parts = []
    if no_quota := accelerators("no_quota"):
        quotas = ", ".join(catalog.serving_quota_metric(a) for a in no_quota)
        parts.append(f"request serving quota {quotas} (IAM & Admin > Quotas)")
    if stockout := accelerators("stockout"):
        parts.append(f"no stock of {', '.join(stockout)} right now (try later or elsewhere)")
    if unavailable := accelerators("unavailable"):
        parts.append(f"{', '.join(unavailable)} not offered there")
    if accelerators("error"):
        parts.append("an attempt failed with another error (see attempts)")
    return f"{region}: {'; '.join(parts)}."
