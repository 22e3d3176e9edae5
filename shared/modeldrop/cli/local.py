"""`modeldrop up`, `modeldrop demo` and `modeldrop local vertex`: the local stack."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the local stack is imported only by the commands that start it
    from modeldrop.local.stack import StackConfig


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

    return up.run(_stack_config(args), demo_model=args.demo_model)


def _demo(args: argparse.Namespace) -> int:
    from modeldrop.local import demo

    return demo.run(_stack_config(args))


def add_stack(commands: argparse._SubParsersAction) -> None:
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
        if name == "up":
            command.add_argument(
                "--demo-model",
                action="store_true",
                help="upload the demo's answering model (trained once, cached) as tiny-llama",
            )
        command.set_defaults(run=run)


def add_local(commands: argparse._SubParsersAction) -> None:
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
