"""Pick the cheapest Vertex AI machine whose GPUs hold the weights plus KV-cache headroom.

Byte counts are exact: catalog decimals become Fractions of their written value, so a
comparison never rounds (floats appear only in messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from modeldrop.domain.findings import Finding, MachineSpec, error, excerpt, info

GIB = 2**30


@dataclass(frozen=True)
class Fit:
    """How a machine compares with what the model needs, in bytes."""

    machine: dict[str, Any]
    usable_bytes: Fraction
    needed_bytes: Fraction
    heads_divisible: bool

    @property
    def fits(self) -> bool:
        return self.heads_divisible and self.usable_bytes >= self.needed_bytes


def exact(value: int | float) -> Fraction:
    """A catalog number as the decimal it is written as (0.9 is 9/10, not the nearest float)."""
    return Fraction(str(value))


def needed_bytes(weight_bytes: int, sizing: dict[str, Any]) -> Fraction:
    """Weights plus headroom for the KV cache and activations."""
    headroom = max(
        weight_bytes * exact(sizing["kv_cache_fraction"]), exact(sizing["kv_cache_min_gib"]) * GIB
    )
    return weight_bytes + headroom


def fit(
    machine: dict[str, Any], weight_bytes: int, heads: int | None, catalog: dict[str, Any]
) -> Fit:
    accelerator = catalog["accelerators"][machine["accelerator_type"]]
    count = machine["accelerator_count"]
    utilization = exact(catalog["sizing"]["gpu_memory_utilization"])
    usable = count * exact(accelerator["memory_gib"]) * GIB * utilization
    divisible = heads is None or heads % count == 0
    return Fit(machine, usable, needed_bytes(weight_bytes, catalog["sizing"]), divisible)


def spec_of(machine: dict[str, Any]) -> MachineSpec:
    return MachineSpec(
        machine["machine_type"], machine["accelerator_type"], machine["accelerator_count"]
    )


def _describe(f: Fit) -> str:
    m = f.machine
    return (
        f"{m['machine_type']} with {m['accelerator_count']} x {m['accelerator_type']} "
        f"({float(f.usable_bytes / GIB):.1f} GiB usable)"
    )


def recommend(
    weight_bytes: int, heads: int | None, catalog: dict[str, Any]
) -> tuple[MachineSpec | None, Finding]:
    """The cheapest machine that fits, with the reason, or an error when none does."""
    fits = [fit(m, weight_bytes, heads, catalog) for m in catalog["machines"]]
    candidates = sorted((f for f in fits if f.fits), key=lambda f: f.machine["usd_per_hour"])
    need = needed_bytes(weight_bytes, catalog["sizing"])
    if not candidates:
        largest = max(fits, key=lambda f: f.usable_bytes)
        return None, error(
            "MACHINE_NONE_FITS",
            f"The weights ({weight_bytes / GIB:.1f} GiB) plus KV-cache headroom need "
            f"{float(need / GIB):.1f} GiB of GPU memory; the largest listed machine, "
            f"{_describe(largest)}, is too small.",
            None,
            "Use a smaller model, or set machine_spec in modeldrop.yaml to a multi-host "
            "configuration your project has quota for.",
        )
    best = candidates[0]
    utilization = catalog["sizing"]["gpu_memory_utilization"]
    reason = (
        f"Recommended {_describe(best)}: the cheapest listed machine (about "
        f"${best.machine['usd_per_hour']:.2f}/h) whose GPU memory at {utilization:.0%} "
        f"utilization holds the weights ({weight_bytes / GIB:.2f} GiB) plus KV-cache headroom "
        f"({float((need - weight_bytes) / GIB):.2f} GiB)"
    )
    if heads is not None:
        reason += f", with {heads} attention heads split evenly across its GPUs"
    return spec_of(best.machine), info("MACHINE_RECOMMENDED", reason + ".")


def check_requested(
    spec: MachineSpec,
    weight_bytes: int,
    heads: int | None,
    catalog: dict[str, Any],
    file: str | None,
) -> list[Finding]:
    """Findings for a machine spec the user asked for (unknown, inconsistent or too small)."""
    machine = next((m for m in catalog["machines"] if m["machine_type"] == spec.machine_type), None)
    if machine is None:
        known = ", ".join(m["machine_type"] for m in catalog["machines"])
        return [
            error(
                "MACHINE_UNKNOWN",
                f"machine_type {excerpt(spec.machine_type)} is not a Vertex AI GPU serving "
                f"machine this tool knows. Known: {known}.",
                file,
                "Pick one of the known machine types, or remove machine_spec to use the "
                "recommendation.",
            )
        ]
    if (spec.accelerator_type, spec.accelerator_count) != (
        machine["accelerator_type"],
        machine["accelerator_count"],
    ):
        return [
            error(
                "MACHINE_MISMATCH",
                f"{spec.machine_type} comes with {machine['accelerator_count']} x "
                f"{machine['accelerator_type']}, not {spec.accelerator_count} x "
                f"{spec.accelerator_type}.",
                file,
                f"Set accelerator_type {machine['accelerator_type']} and accelerator_count "
                f"{machine['accelerator_count']}.",
            )
        ]
    result = fit(machine, weight_bytes, heads, catalog)
    if not result.fits:
        why = (
            f"its GPU memory ({float(result.usable_bytes / GIB):.1f} GiB usable) is less than "
            f"the {float(result.needed_bytes / GIB):.1f} GiB the weights and KV cache need"
            if result.heads_divisible
            else f"{heads} attention heads cannot be split across {spec.accelerator_count} GPUs"
        )
        return [
            error(
                "MACHINE_TOO_SMALL",
                f"The requested {spec.machine_type} cannot serve this model: {why}.",
                file,
                "Choose a larger machine, or remove machine_spec to use the recommendation.",
            )
        ]
    return [info("MACHINE_REQUESTED", f"Using the requested {_describe(result)}.", file)]
