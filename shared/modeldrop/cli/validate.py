"""`modeldrop validate`: a model folder's verdict from its file headers, and its placement
candidates."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from modeldrop.domain.findings import Verdict
from modeldrop.validation.placement import Candidate

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def _human_size(n: float, units: Sequence[str], step: int) -> str:
    for unit in units[:-1]:
        if abs(n) < step:
            return f"{n:.2f} {unit}".replace(".00 ", " ")
        n /= step
    return f"{n:.2f} {units[-1]}"


def format_summary(location: str, verdict: Verdict) -> str:
    """A short, readable summary of a verdict."""
    data = verdict.as_dict()
    lines = [f"{data['verdict'].upper()}  {location}"]
    if verdict.architecture:
        base = verdict.matched_base or "no listed base model"
        lines.append(f"  architecture  {verdict.architecture} ({verdict.model_type}), base: {base}")
    if verdict.parameters is not None and verdict.weight_bytes is not None:
        params = _human_size(verdict.parameters, ["", "K", "M", "B", "T"], 1000).strip()
        size = _human_size(verdict.weight_bytes, ["B", "KiB", "MiB", "GiB", "TiB"], 1024)
        lines.append(f"  parameters    {params}, weights {size}")
    if verdict.recommended_machine:
        m = verdict.recommended_machine
        lines.append(
            f"  machine       {m.machine_type} ({m.accelerator_count} x {m.accelerator_type})"
        )
    if verdict.findings:
        lines.append("  findings:")
        for f in verdict.findings:
            where = f"{f.file}: " if f.file else ""
            lines.append(f"    {f.severity:<7} {f.code:<28} {where}{f.as_dict()['message']}")
    return "\n".join(lines)


def format_ladder(ladder: Sequence[Candidate]) -> str:
    """The placement candidates, in the order a deploy would try them."""
    if not ladder:
        return "  candidates    none: no listed machine fits in the allowed regions and limits"
    lines = ["  candidates    (tried in this order; prices are catalog estimates)"]
    for i, c in enumerate(ladder, start=1):
        m = c.machine_spec
        lines.append(
            f"    {i:>3}. {c.region:<24} {m.machine_type:<18} {m.accelerator_count} x "
            f"{m.accelerator_type:<22} {'spot' if c.spot else 'on-demand':<9} "
            f"~${float(c.hourly_usd):.2f}/h"
        )
    return "\n".join(lines)


def _ladder(verdict: Verdict, regions: Sequence[str]) -> list[Candidate]:
    """The candidates a deploy would try, from the catalog alone (none for a rejected folder)."""
    from modeldrop.validation.placement import ladder

    if not verdict.accepted or verdict.weight_bytes is None:
        return []
    return ladder(verdict.weight_bytes, verdict.attention_heads, verdict.overrides, regions)


def _validate(args: argparse.Namespace) -> int:
    from modeldrop.adapters.folders import open_folder
    from modeldrop.settings import allowed_regions
    from modeldrop.validation.architecture import BasePolicy
    from modeldrop.validation.validator import validate_folder

    folder = open_folder(args.location)
    verdict = validate_folder(folder, BasePolicy(args.policy))
    ladder = _ladder(verdict, args.regions or allowed_regions())
    if args.json:
        body = verdict.as_dict() | {"candidates": [c.as_dict() for c in ladder]}
        print(json.dumps(body, indent=2))
    else:
        print(format_summary(args.location, verdict))
        if verdict.accepted:
            print(format_ladder(ladder))
    return EXIT_ACCEPTED if verdict.accepted else EXIT_REJECTED


def _regions(text: str) -> tuple[str, ...]:
    """--regions: comma-separated region names, checked like MODELDROP_REGIONS."""
    from modeldrop.settings import SETTINGS

    try:
        regions: tuple[str, ...] = SETTINGS["regions"].parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if not regions:
        raise argparse.ArgumentTypeError("name one region or more, such as us-central1")
    return regions


def add(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser(
        "validate",
        help="validate a model folder from its file headers",
        description="Validate a Hugging Face model folder from file headers alone. "
        "Exit status: 0 accepted, 1 rejected, 2 usage or access error.",
    )
    validate.add_argument("location", help="a local folder or gs://BUCKET/PREFIX")
    validate.add_argument("--json", action="store_true", help="print the verdict as JSON")
    validate.add_argument(
        "--policy",
        choices=["strict", "family"],
        default="strict",
        help="strict: weights must derive from a listed base model (default); "
        "family: any size of a supported family",
    )
    validate.add_argument(
        "--regions",
        type=_regions,
        help="comma-separated regions for the candidate ladder, first preferred (default: "
        "MODELDROP_REGIONS, else MODELDROP_REGION, else us-central1)",
    )
    validate.set_defaults(run=_validate)
