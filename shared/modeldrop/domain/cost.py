"""What a deployment costs: its hourly estimate and what it has accrued (pure: times passed in).

Estimates only: the catalog's us-central1 on-demand prices (spot placements use the same
estimate; the catalog has no Spot prices) times the replicas that run. A deployment holds its
machine from its first DEPLOYING transition until it is UNDEPLOYED, or until it FAILED without
having been DEPLOYED (a failed deploy attempt's endpoint is deleted). Exact arithmetic
(Fraction) throughout; floats only in what the api shows.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from modeldrop.domain.deployment import Deployment, State

ESTIMATE_NOTE = (
    "Estimates from the catalog's us-central1 on-demand prices (Spot uses the same estimate) "
    "times the minimum replicas; Google Cloud bills the real figures."
)
RUNNING = (State.DEPLOYING, State.DEPLOYED, State.UNDEPLOYING)


def hourly_usd(record: Deployment) -> Fraction | None:
    """The estimated price per hour of the record's placement and replicas (None before one)."""
    if not record.placement:
        return None
    price = Fraction(str(record.placement.get("hourly_usd", 0)))
    replicas = record.overrides.get("replicas", {}).get("min", 1)
    return price * replicas


def held_since(record: Deployment) -> datetime | None:
    """When the record started holding a machine: its first DEPLOYING transition."""
    return next((t.at for t in record.history if t.state is State.DEPLOYING), None)


def released_at(record: Deployment) -> datetime | None:
    """When it stopped: UNDEPLOYED, or FAILED before it was ever DEPLOYED (None: still held)."""
    deployed = False
    for transition in record.history:
        if transition.state is State.DEPLOYED:
            deployed = True
        if transition.state is State.UNDEPLOYED or (
            transition.state is State.FAILED and not deployed
        ):
            return transition.at
    return None


def accrued_usd(record: Deployment, now: datetime) -> Fraction:
    """The estimated cost so far: the hourly estimate times the time the machine was held."""
    hourly, start = hourly_usd(record), held_since(record)
    if hourly is None or start is None:
        return Fraction(0)
    end = released_at(record) or now
    seconds = max(0, round((end - start).total_seconds() * 1_000_000))  # whole microseconds
    return hourly * Fraction(seconds, 3_600_000_000)


def money(value: Fraction | None) -> float | None:
    """A figure for JSON: dollars rounded to the cent's hundredth (None stays None)."""
    return None if value is None else round(float(value), 4)
