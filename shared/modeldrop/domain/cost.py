"""What a deployment costs: its hourly estimate and what it has accrued (pure: times passed in).

Estimates only: the catalog's us-central1 on-demand prices (spot placements use the catalog's
Spot estimate, spot_usd_per_hour) times the replicas that run. A deployment holds its
machine from its first DEPLOYING transition until it is UNDEPLOYED, or until it FAILED without
having been DEPLOYED (a failed deploy attempt's endpoint is deleted), once per deploy round (a
redeploy starts another). Exact arithmetic
(Fraction) throughout; floats only in what the api shows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

from modeldrop.domain.deployment import Deployment, State

ESTIMATE_NOTE = (
    "Estimates from the catalog's us-central1 on-demand prices (Spot placements use the "
    "catalog's Spot estimate) times the minimum replicas; Google Cloud bills the real figures."
)
RUNNING = (State.DEPLOYING, State.DEPLOYED, State.UNDEPLOYING)


def hourly_usd(record: Deployment) -> Fraction | None:
    """The estimated price per hour of the record's placement and replicas (None before one)."""
    if not record.placement:
        return None
    price = Fraction(str(record.placement.get("hourly_usd", 0)))
    replicas = record.overrides.get("replicas", {}).get("min", 1)
    return price * replicas


def held(record: Deployment, now: datetime) -> list[tuple[datetime, datetime]]:
    """The spans the record held a machine: from each deploy round's first DEPLOYING transition
    until UNDEPLOYED, or FAILED before that round was DEPLOYED (a failed deploy attempt's
    endpoint is deleted); the open one ends `now`."""
    spans: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    deployed = False
    for transition in record.history:
        if transition.state is State.DEPLOYING and start is None:
            start, deployed = transition.at, False
        elif transition.state is State.DEPLOYED:
            deployed = True
        elif start is not None and (
            transition.state is State.UNDEPLOYED
            or (transition.state is State.FAILED and not deployed)
        ):
            spans.append((start, transition.at))
            start = None
    if start is not None:
        spans.append((start, max(start, now)))
    return spans


def accrued_usd(record: Deployment, now: datetime) -> Fraction:
    """The estimated cost so far: the hourly estimate times the time the machine was held
    (every round at the current placement's price)."""
    hourly = hourly_usd(record)
    if hourly is None:
        return Fraction(0)
    micros = sum(
        max(0, (end - start) // timedelta(microseconds=1)) for start, end in held(record, now)
    )
    return hourly * Fraction(micros, 3_600_000_000)


def money(value: Fraction | None) -> float | None:
    """A figure for JSON: dollars rounded to the cent's hundredth (None stays None)."""
    return None if value is None else round(float(value), 4)
