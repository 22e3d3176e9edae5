"""`modeldrop logs|chat|costs|ui`: what a deployment logs, answers and costs, and the dashboard."""

from __future__ import annotations

import argparse
import json
import os
import sys
import webbrowser
from collections import OrderedDict
from typing import Any

from modeldrop.api_client import ApiClient, display_url
from modeldrop.cli import common, views
from modeldrop.cli.common import json_option, note, print_json
from modeldrop.cli.exits import Exit
from modeldrop.errors import UsageError

MAX_PROMPT_BYTES = 2**20  # the api's default body limit
SEEN_LOG_LINES = 10_000  # (at, text) pairs remembered by `logs --follow`
CONSOLE_BROWSERS = {"www-browser", "links", "elinks", "lynx", "w3m"}


def _log_target(api: ApiClient, target: str) -> str:
    """The deployment whose log to read: by id, or a model name's serving (else newest)
    revision."""
    body = api.resolve(target)
    if "serving" not in body:
        return str(body["id"])
    chosen = body.get("serving") or body["id"]
    which = "serving" if body.get("serving") else "newest"
    note(f"{views.clean(target, 200)}: the log of its {which} revision {views.clean(chosen, 200)}")
    return str(chosen)


def _logs(args: argparse.Namespace, api: ApiClient) -> int:
    deployment_id = _log_target(api, args.target)
    body = api.logs(deployment_id, args.limit)
    if args.json and not args.follow:
        print_json(body)
        return Exit.OK
    seen: OrderedDict[tuple[Any, Any], None] = OrderedDict()
    while True:
        for entry in reversed(body.get("entries") or []):  # oldest first
            if not isinstance(entry, dict):
                continue
            key = (entry.get("at"), entry.get("text"))
            if key in seen:
                continue
            seen[key] = None
            if len(seen) > SEEN_LOG_LINES:
                seen.popitem(last=False)
            print(json.dumps(entry) if args.json else views.log_line(entry), flush=True)
        if not args.follow:
            return Exit.OK
        common.sleep(args.interval)
        body = api.logs(deployment_id, args.limit)


def _prompt(text: str) -> str:
    if text != "-":
        return text
    data = sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        raise UsageError(
            f"The prompt on stdin is over {MAX_PROMPT_BYTES} bytes.", "Send a shorter one."
        )
    return data.decode("utf-8", "replace")


def _chat(args: argparse.Namespace, api: ApiClient) -> int:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": _prompt(args.prompt)})
    body: dict[str, Any] = {"model": args.model, "messages": messages}
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        body["temperature"] = args.temperature
    wrote = False
    try:
        for event in api.chat_stream(body):
            if args.json:
                print(json.dumps(event), flush=True)
                continue
            for choice in event.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                text = views.answer_text((delta or {}).get("content"))
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                    wrote = True
    finally:
        if wrote:
            sys.stdout.write("\n")
            sys.stdout.flush()
    if api.answered_by:
        note(f"(answered by deployment {views.clean(api.answered_by, 200)})")
    return Exit.OK


def _costs(args: argparse.Namespace, api: ApiClient) -> int:
    body = api.costs()
    if args.json:
        print_json(body)
    else:
        print(views.costs_text(body))
    return Exit.OK


def has_browser() -> bool:
    """Whether a graphical browser can be opened here (not in a headless or SSH session)."""
    if sys.platform not in ("darwin", "win32") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    return getattr(browser, "name", "") not in CONSOLE_BROWSERS


def _ui(args: argparse.Namespace, api: ApiClient) -> int:
    url = f"{api.base}/ui"
    print(display_url(url), flush=True)
    if args.no_browser:
        return Exit.OK
    if not has_browser():
        note("no browser here: open the URL above in one")
        return Exit.OK
    if webbrowser.open(url):
        note("opened in your browser")
    else:
        note("could not open a browser: open the URL above")
    return Exit.OK


def add(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    command = common.adder(commands, parent)

    logs = command(
        "logs",
        "the model server's log of a deployment (a model name: its serving revision), oldest "
        "first; --follow prints new lines as they come",
        _logs,
    )
    logs.add_argument("target", metavar="ID|NAME", help="a deployment id or a model name")
    logs.add_argument(
        "--limit", type=int, default=100, help="the newest this many lines (1-1000, default 100)"
    )
    logs.add_argument("--follow", "-f", action="store_true", help="poll for new lines (Ctrl-C)")
    logs.add_argument(
        "--interval", type=common.positive, default=2.0, help="seconds between polls (default 2)"
    )
    json_option(logs)

    chat = command(
        "chat",
        "ask a model (its name, or a deployment id) and print the answer as it streams in",
        _chat,
    )
    chat.add_argument("model", metavar="NAME|ID", help="a model name or a deployment id")
    chat.add_argument("prompt", help='the user message ("-": read it from stdin)')
    chat.add_argument("--system", help="a system message before it")
    chat.add_argument("--max-tokens", type=int, default=256, help="default 256")
    chat.add_argument("--temperature", type=float)
    chat.add_argument(
        "--json", action="store_true", help="print each event's JSON as it arrives, one a line"
    )

    costs = command(
        "costs", "what the running deployments cost, each and in total (estimates)", _costs
    )
    json_option(costs)

    ui = command(
        "ui",
        "open the dashboard (<api>/ui) in a browser; prints its URL either way",
        _ui,
    )
    ui.add_argument("--no-browser", action="store_true", help="only print the URL")
