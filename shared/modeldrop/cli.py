"""The `modeldrop` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modeldrop.domain.findings import Verdict
from modeldrop.errors import ModeldropError
from modeldrop.validation.placement import Candidate

if TYPE_CHECKING:  # the local stack is imported only by the commands that start it
    from modeldrop.local.stack import StackConfig

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
    validate.add_argument(
        "--regions",
        type=_regions,
        help="comma-separated regions for the candidate ladder, first preferred (default: "
        "MODELDROP_REGIONS, else MODELDROP_REGION, else us-central1)",
    )
    validate.set_defaults(run=_validate)
    _add_stack(commands)
    _add_status(commands)
    _add_local(commands)
    return parser


def _stack_config(args: argparse.Namespace) -> StackConfig:
    from modeldrop.local.stack import StackConfig

    return StackConfig(
        settle_seconds=args.settle,
        completion_mode=args.completion_mode,
        base_policy=args.policy,
        engine=args.engine,
        vertex_capacity=args.vertex_capacity,
    )


def _up(args: argparse.Namespace) -> int:
    from modeldrop.local import up

    return up.run(_stack_config(args))


def _demo(args: argparse.Namespace) -> int:
    from modeldrop.local import demo

    return demo.run(_stack_config(args))


def _add_stack(commands: argparse._SubParsersAction) -> None:
    """`modeldrop up` and `modeldrop demo`: the local stack."""
    for name, run, text in (
        ("up", _up, "start the local stack and keep it running until Ctrl-C"),
        ("demo", _demo, "build a tiny model and take it to DEPLOYED on the local stack"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--settle", type=float, default=0.0, help="settle window in seconds (default 0)"
        )
        command.add_argument("--completion-mode", choices=["auto", "marker"], default="auto")
        command.add_argument(
            "--policy",
            choices=["strict", "family"],
            default="family",
            help="base-model policy (default family: tiny models are not listed sizes)",
        )
        command.add_argument(
            "--engine",
            choices=["auto", "transformers", "vllm", "echo"],
            default="auto",
            help="the Vertex emulator's engine",
        )
        command.add_argument(
            "--vertex-capacity",
            type=Path,
            metavar="FILE",
            help='the Vertex emulator\'s GPU capacity, {"REGION": {"ACCELERATOR_TYPE": '
            '{"quota": N, "stock": N}}} (missing entries: unlimited)',
        )
        command.set_defaults(run=run)


def _status(args: argparse.Namespace) -> int:
    from modeldrop.api_client import ApiClient, api_url

    client = ApiClient(api_url(args.api))
    if args.watch and args.target:
        print(f"watching {args.target} at {client.base} (Ctrl-C to stop)", file=sys.stderr)
        last = None
        for body in client.watch(args.target, args.interval):
            last = body
            print(f"{body['updated_at']}  {body['state']:<11} {body['id']}", flush=True)
        print(json.dumps(last, indent=2))
        return 0 if last and last["state"] == "DEPLOYED" else 1
    print(json.dumps(client.status(args.target), indent=2))
    return 0


def _add_status(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status",
        help="show deployments (all, or one by id or model name)",
        description="Ask the api for the status of deployments. The api URL comes from --api, "
        "MODELDROP_API_URL or the local stack's .modeldrop/stack.json.",
    )
    status.add_argument("target", nargs="?", help="deployment id or model name")
    status.add_argument(
        "--watch", action="store_true", help="print each state change until settled"
    )
    status.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    status.add_argument("--api", help="api base URL")
    status.set_defaults(run=_status)


def _add_local(commands: argparse._SubParsersAction) -> None:
    """`modeldrop local vertex ...`: the local Vertex AI emulator."""
    from modeldrop.local.vertex.__main__ import add_arguments, run

    local = commands.add_parser("local", help="run parts of the local stack")
    parts = local.add_subparsers(dest="local_command", required=True)
    vertex = parts.add_parser(
        "vertex",
        help="local Vertex AI emulator (Model Garden deploy, endpoints, queries)",
        description="Serve the Vertex AI REST calls modeldrop makes (v1beta1 deploy, operations, "
        "endpoints, dedicated-endpoint queries) and serve deployed models for real.",
    )
    add_arguments(vertex)
    vertex.set_defaults(run=run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ModeldropError as exc:
        print(f"modeldrop: error: [{exc.code}] {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
