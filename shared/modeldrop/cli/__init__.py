"""The `modeldrop` command line: validate a folder, run the local stack, and every api action
(status, list, show, delete, rollback, redeploy, logs, chat, costs, ui).

Each command lives in its own module: validate (folder verdicts), local (the local stack),
deployments and serving (the api's routes, through modeldrop.api_client), with the printing in
views and the exit statuses in exits.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modeldrop.cli import common, deployments, local, serving, validate
from modeldrop.cli.exits import Exit
from modeldrop.cli.validate import EXIT_ACCEPTED, EXIT_REJECTED, EXIT_USAGE, format_ladder
from modeldrop.cli.validate import format_summary as format_summary
from modeldrop.errors import ModeldropError

__all__ = [
    "EXIT_ACCEPTED",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "Exit",
    "build_parser",
    "format_ladder",
    "format_summary",
    "main",
]

EPILOG = (
    "The api commands (status, list, show, delete, rollback, redeploy, logs, chat, costs, ui)\n"
    "find the api in --api, else MODELDROP_API_URL, else the local stack's\n"
    ".modeldrop/stack.json, and send --token (MODELDROP_API_TOKEN) when the api has tokens.\n"
    "Tables are for people; --json prints the api's JSON as it is. Progress goes to stderr.\n\n"
    f"{common.EPILOG}\n\n"
    "validate: 0 accepted, 1 rejected, 2 usage or access error."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldrop",
        description="Validate and deploy custom-weight LLMs to Vertex AI Model Garden.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate.add(commands)
    local.add_stack(commands)
    api = common.options()
    deployments.add(commands, api)
    serving.add(commands, api)
    local.add_local(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ModeldropError as exc:
        print(f"modeldrop: error: [{exc.code}] {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
