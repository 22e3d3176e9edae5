"""`modeldrop status|list|show|delete|rollback|redeploy`: the deployment routes of the api."""

from __future__ import annotations

import argparse
from typing import Any

from modeldrop.api_client import SETTLED, ApiClient, NotFound
from modeldrop.cli import common, views
from modeldrop.cli.common import json_option, note, print_json, wait_options
from modeldrop.cli.exits import Exit, for_state

TARGET = "a deployment id or a model name"
NOTHING_RUNS = {"UNDEPLOYED", "SUPERSEDED", "REJECTED"}  # what a delete may end in


def _status(args: argparse.Namespace, api: ApiClient) -> int:
    if args.watch and args.target:
        note(f"watching {args.target} at {api.shown_base} (Ctrl-C to stop)")
        last = None
        for body in api.watch(args.target, args.interval, common.sleep, args.timeout):
            last = body
            note(views.progress_line(body))
        if last is None or last.get("state") not in SETTLED:
            note(f"modeldrop: {views.clean(args.target, 200)} did not settle in {args.timeout:g} s")
            if last is not None:
                print_json(last)
            return Exit.TIMEOUT
        print_json(last)
        return for_state(last.get("state"), {"DEPLOYED"})
    if args.target:
        print_json(api.resolve(args.target))
    else:
        print_json(api.deployments(limit=50))
    return Exit.OK


def _list(args: argparse.Namespace, api: ApiClient) -> int:
    page = api.deployments(args.state, args.model, args.limit, args.page_token)
    if args.json:
        print_json(page)
        return Exit.OK
    served = api.served_models().get("data") or []
    serving = {str(m.get("deployment_id")) for m in served if isinstance(m, dict)}
    print(views.deployments_table(page.get("deployments") or [], serving, views.now()))
    if page.get("next_page_token"):
        note(f"more: modeldrop list --page-token {views.clean(page['next_page_token'], 200)}")
    return Exit.OK


def _show(args: argparse.Namespace, api: ApiClient) -> int:
    body = api.resolve(args.target)
    if args.json:
        print_json(body)
    else:
        print(views.show_text(body, views.now()))
    code = for_state(body.get("state"))
    if code is not Exit.OK:
        note(f"modeldrop: {views.clean(body.get('id'), 200)} is {body.get('state')}")
    return code


def _deletable(api: ApiClient, target: str) -> dict[str, Any]:
    """The deployment to delete: by id, or a model name's serving revision."""
    body = api.resolve(target)
    if "serving" not in body:
        return body
    serving = body.get("serving")
    if not serving:
        raise NotFound(
            404,
            f"Model {views.clean(target, 200)} has no serving revision to delete.",
            "Delete a revision by its id: `modeldrop show NAME` lists them.",
            code="NO_SERVING_REVISION",
        )
    note(f"{views.clean(target, 200)}: deleting its serving revision {views.clean(serving, 200)}")
    return {"id": serving}


def _delete(args: argparse.Namespace, api: ApiClient) -> int:
    deployment_id = _deletable(api, args.target)["id"]
    body = api.delete(deployment_id)
    code = Exit.OK
    if not args.no_wait:
        body, code = common.wait(api, body, {"UNDEPLOYED", "SUPERSEDED"}, args)
        if body.get("state") in NOTHING_RUNS:  # a REJECTED one never ran: nothing to delete
            code = Exit.OK
    if args.json:
        print_json(body)
    else:
        print(f"{views.clean(body.get('id'), 200)}  {views.clean(body.get('state'), 20)}")
    return code


def _rollback(args: argparse.Namespace, api: ApiClient) -> int:
    body = api.rollback(args.name)
    if args.json:
        print_json(body)
    else:
        print(
            f"{views.clean(args.name, 200)} now answers from "
            f"{views.clean(body.get('serving'), 200)}"
        )
    return Exit.OK


def _redeploy(args: argparse.Namespace, api: ApiClient) -> int:
    try:
        body = api.redeploy(args.id)
    except NotFound as exc:
        try:
            model = api.model(args.id)
        except NotFound:
            raise exc from None
        raise NotFound(
            404,
            f"{views.clean(args.id, 200)} is a model name; redeploy takes a deployment id.",
            f"Its newest revision is {views.clean(model.get('id'), 200)}; "
            "`modeldrop show NAME` lists the others.",
        ) from None
    code = Exit.OK
    if not args.no_wait:
        body, code = common.wait(api, body, {"DEPLOYED"}, args)
    if args.json:
        print_json(body)
    else:
        print(f"{views.clean(body.get('id'), 200)}  {views.clean(body.get('state'), 20)}")
    return code


def add(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    command = common.adder(commands, parent)

    status = command(
        "status",
        "the api's JSON of all deployments, or of one by id or model name; --watch waits for "
        "it to settle (exit 0 DEPLOYED, 5 REJECTED, 6 FAILED, 7 otherwise)",
        _status,
    )
    status.add_argument("target", nargs="?", help=TARGET)
    status.add_argument(
        "--watch",
        action="store_true",
        help="print each state change (stderr) until settled, then the JSON",
    )
    status.add_argument(
        "--interval", type=common.positive, default=2.0, help="seconds between polls"
    )
    status.add_argument(
        "--timeout", type=common.positive, help="give up watching after this many seconds"
    )

    listing = command("list", "deployments, newest first, as a table", _list)
    listing.add_argument(
        "--state", metavar="S", help="only these states, comma separated (DEPLOYED,FAILED)"
    )
    listing.add_argument("--model", metavar="M", help="only this model name")
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many (1-200, default 50)"
    )
    listing.add_argument("--page-token", help="the next page (printed under a full page)")
    json_option(listing)

    show = command(
        "show",
        "one deployment, or a model name's newest revision with its revisions: timeline, "
        "findings, placement, cost, error (exit 5 REJECTED, 6 FAILED)",
        _show,
    )
    show.add_argument("target", metavar="ID|NAME", help=TARGET)
    json_option(show)

    delete = command(
        "delete",
        "undeploy a deployment and delete its endpoint (a model name: its serving revision); "
        "waits until UNDEPLOYED",
        _delete,
    )
    delete.add_argument("target", metavar="ID|NAME", help=TARGET)
    wait_options(delete, "UNDEPLOYED")
    json_option(delete)

    rollback = command(
        "rollback",
        "point a model name back at the revision its serving one replaced (while DEPLOYED)",
        _rollback,
    )
    rollback.add_argument("name", metavar="NAME", help="a model name")
    json_option(rollback)

    redeploy = command(
        "redeploy",
        "deploy an UNDEPLOYED deployment again; waits until DEPLOYED or FAILED",
        _redeploy,
    )
    redeploy.add_argument("id", metavar="ID", help="a deployment id")
    wait_options(redeploy, "DEPLOYED or FAILED")
    json_option(redeploy)
