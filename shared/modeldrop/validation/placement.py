"""Placement candidates: every machine that fits the model, in every allowed region, cheapest
(on demand) first, then in the order of the regions.

Allowed regions come from the operator (MODELDROP_REGIONS); a folder's modeldrop.yaml
`placement` block only narrows them, its accelerator types and its price: a region it names that
the operator does not allow is ignored, so the ladder may be empty. Prices are the catalog's
us-central1 estimates, used for every region: usd_per_hour on demand, spot_usd_per_hour on Spot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from modeldrop import catalog
from modeldrop.domain.findings import MachineSpec
from modeldrop.validation.sizing import exact, fit, spec_of

SPOT_MODES = ("never", "prefer", "only")


@dataclass(frozen=True)
class Candidate:
    """One machine spec in one region, on spot or on demand, with its estimated price."""

    region: str
    machine_spec: MachineSpec
    spot: bool
    hourly_usd: Fraction

    def as_dict(self) -> dict[str, Any]:
        """{region, machine_spec {machine_type, accelerator_type, accelerator_count}, spot,
        hourly_usd}: the record's and the api's shape of a placement."""
        return {
            "region": self.region,
            "machine_spec": self.machine_spec.as_dict(),
            "spot": self.spot,
            "hourly_usd": float(self.hourly_usd),
        }


def placement_of(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The `placement` block of modeldrop.yaml; the older top-level `spot: true` means spot
    without on-demand fallback (`only`) when the block does not say."""
    placement = dict(overrides.get("placement", {}))
    if "spot" not in placement and overrides.get("spot"):
        placement["spot"] = "only"
    return placement


def ladder(
    weight_bytes: int,
    heads: int | None,
    overrides: Mapping[str, Any],
    regions: Sequence[str],
    default_spec: MachineSpec | None = None,
) -> list[Candidate]:
    """The candidates of a validated folder from the machine catalog: the machine_spec of its
    modeldrop.yaml (else `default_spec`) pinned, its `placement` block applied."""
    pinned = overrides.get("machine_spec")
    return candidates(
        weight_bytes,
        heads,
        catalog.machine_catalog(),
        regions,
        placement_of(overrides),
        MachineSpec(**pinned) if pinned else default_spec,
    )


def candidates(
    weight_bytes: int,
    heads: int | None,
    machines_catalog: dict[str, Any],
    regions: Sequence[str],
    placement_overrides: Mapping[str, Any],
    pinned_spec: MachineSpec | None = None,
) -> list[Candidate]:
    """The ladder of candidates to try, first one first (empty when nothing fits or is allowed).

    A pinned machine spec is the only machine type, still tried in every allowed region; the
    placement filters apply to it too. A spot candidate's price is the machine's
    spot_usd_per_hour, an on-demand one's its usd_per_hour.
    """
    wanted = placement_overrides.get("regions")
    allowed = [r for r in regions if wanted is None or r in wanted]
    accelerators = placement_overrides.get("accelerators")
    max_usd = placement_overrides.get("max_hourly_usd")
    spot = placement_overrides.get("spot", "never")
    variants = {"never": (False,), "prefer": (True, False), "only": (True,)}[spot]
    cap = None if max_usd is None else exact(max_usd)
    ladder = []
    for order, machine in enumerate(machines_catalog["machines"]):
        spec = spec_of(machine)
        if (
            (pinned_spec is not None and spec != pinned_spec)
            or (accelerators is not None and spec.accelerator_type not in accelerators)
            or not fit(machine, weight_bytes, heads, machines_catalog).fits
        ):
            continue
        on_demand = exact(machine["usd_per_hour"])
        prices = {False: on_demand, True: exact(machine["spot_usd_per_hour"])}
        for rank, region in enumerate(allowed):
            for variant in variants:
                # Each variant is priced (and capped by max_hourly_usd) at its own catalog
                # estimate, spot_usd_per_hour or usd_per_hour, so a spot variant under the cap
                # stays when its on-demand twin is over it. The order is by the on-demand price,
                # whatever the variant: a spot variant comes right before its on-demand twin.
                price = prices[variant]
                if cap is not None and price > cap:
                    continue
                key = (on_demand, rank, order, not variant)
                ladder.append((key, Candidate(region, spec, variant, price)))
    return [candidate for _, candidate in sorted(ladder, key=lambda item: item[0])]
