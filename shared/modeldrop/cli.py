"""The `modeldrop` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from modeldrop.domain.findings import Verdict
from modeldrop.errors import ModeldropError

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


def _validate(args: argparse.Namespace) -> int:
    from modeldrop.adapters.folders import open_folder
    from modeldrop.validation.architecture import BasePolicy
    from modeldrop.validation.validator import validate_folder

    verdict = validate_folder(open_folder(args.location), BasePolicy(args.policy))
    if args.json:
        print(json.dumps(verdict.as_dict(), indent=2))
    else:
        print(format_summary(args.location, verdict))
    return EXIT_ACCEPTED if verdict.accepted else EXIT_REJECTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldrop",
        description="Validate and deploy custom-weight LLMs to Vertex AI Model Garden.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
    validate.set_defaults(run=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ModeldropError as exc:
        print(f"modeldrop: error: [{exc.code}] {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
