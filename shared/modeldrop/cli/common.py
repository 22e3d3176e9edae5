"""What the api commands share: the --api/--token/--json options, the client, the mapping of
errors to exit statuses, and printing progress while a command waits."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from modeldrop.api_client import ApiClient, ApiRefused, NotFound, Unreachable, api_url
from modeldrop.cli import views
from modeldrop.cli.exits import Exit, for_state, table
from modeldrop.errors import AccessError, ModeldropError, UsageError

Command = Callable[[argparse.Namespace, ApiClient], int]

sleep: Callable[[float], None] = time.sleep  # tests replace it (a Ctrl-C after some polls)

EPILOG = "exit status:\n" + table()


def options() -> argparse.ArgumentParser:
    """The options of every api command (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("api")
    group.add_argument(
        "--api",
        metavar="URL",
        help="api base URL (default: MODELDROP_API_URL, else the local stack's "
        ".modeldrop/stack.json)",
    )
    group.add_argument(
        "--token",
        help="bearer token when the api has tokens (default: MODELDROP_API_TOKEN; the variable "
        "keeps it out of the process list)",
    )
    group.add_argument(
        "--identity-token",
        help="Google Cloud identity token for a private api (default: MODELDROP_IDENTITY_TOKEN): "
        "sent as the bearer token, or in X-Serverless-Authorization when --token is given too",
    )
    return common


def adder(
    commands: argparse._SubParsersAction, parent: argparse.ArgumentParser
) -> Callable[[str, str, Command], argparse.ArgumentParser]:
    """`subcommand` bound to one parser's commands and the shared options."""
    return lambda name, text, run: subcommand(commands, parent, name, text, run)


def subcommand(
    commands: argparse._SubParsersAction,
    parent: argparse.ArgumentParser,
    name: str,
    text: str,
    command: Command,
) -> argparse.ArgumentParser:
    """An api command: the shared options, the exit statuses in its --help, errors mapped."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=text,
        description=text,
        parents=[parent],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run(command))
    return parser


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the api's JSON as it is (for scripts)"
    )


def wait_options(parser: argparse.ArgumentParser, until: str) -> None:
    parser.add_argument(
        "--no-wait", action="store_true", help=f"answer at once instead of waiting for {until}"
    )
    parser.add_argument(
        "--interval", type=positive, default=2.0, help="seconds between polls (default 2)"
    )
    parser.add_argument(
        "--timeout", type=positive, help="give up waiting after this many seconds (exit 8)"
    )


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {views.clean(text, 40)}") from None
    if not 0 < value < 10**7:
        raise argparse.ArgumentTypeError("give a number of seconds above 0")
    return value


def client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(api_url(args.api), args.token, args.identity_token)


def note(text: str) -> None:
    """Progress and context, on stderr (stdout stays what scripts read)."""
    print(text, file=sys.stderr, flush=True)


def print_json(body: Any) -> None:
    print(json.dumps(body, indent=2), flush=True)


def run(command: Command) -> Callable[[argparse.Namespace], int]:
    """The command with its errors as exit statuses (and their message on stderr)."""

    def runner(args: argparse.Namespace) -> int:
        try:
            return command(args, client(args))
        except KeyboardInterrupt:
            note("modeldrop: interrupted")
            return Exit.INTERRUPTED
        except NotFound as exc:
            note(f"modeldrop: not found: {views.clean(exc.message)}")
            if exc.hint:
                note(f"  hint: {views.clean(exc.hint)}")
            return Exit.NOT_FOUND
        except ApiRefused as exc:
            note(views.refusal_text(exc.status, exc.code, exc.message, exc.hint, exc.details))
            return Exit.REFUSED
        except Unreachable as exc:
            note(f"modeldrop: {views.clean(exc.message)}")
            note(f"  hint: {views.clean(exc.hint)}")
            return Exit.UNREACHABLE
        except BrokenPipeError:  # `modeldrop list | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return Exit.OK
        except (UsageError, AccessError) as exc:
            note(f"modeldrop: error: [{exc.code}] {views.clean(str(exc))}")
            return Exit.USAGE
        except ModeldropError as exc:
            note(f"modeldrop: error: [{exc.code}] {views.clean(str(exc))}")
            return Exit.REFUSED

    return runner


def wait(
    api: ApiClient,
    body: dict[str, Any],
    until: set[str],
    args: argparse.Namespace,
) -> tuple[dict[str, Any], Exit]:
    """Wait for the deployment to reach `until` (or settle), printing each state change to
    stderr. (the last body, the exit status)."""
    note(f"waiting for {' or '.join(sorted(until))} (Ctrl-C to stop waiting)")
    last, ended = api.wait(
        body["id"],
        until,
        lambda b: note(views.progress_line(b)),
        interval=args.interval,
        timeout=args.timeout,
        sleep=sleep,
        first=body,
    )
    if not ended:
        note(f"modeldrop: still {views.clean(last.get('state'), 20)} after {args.timeout:g} s")
        return last, Exit.TIMEOUT
    return last, for_state(last.get("state"), until)
