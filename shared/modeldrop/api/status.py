"""Deployment routes: list deployments, one deployment, delete (undeploy) and redeploy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldrop import logs
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError, no_deployment
from modeldrop.api.keys import MAX_BYTES, valid_name
from modeldrop.api.views import status_body
from modeldrop.domain.deployment import ActionRefused, Deployment, State
from modeldrop.domain.findings import excerpt
from modeldrop.errors import AccessError, UsageError
from modeldrop.service import revisions
from modeldrop.service.lifecycle import poll_deploy, start_delete
from modeldrop.service.ports import DeployError

MAX_PAGE = 200
CONFLICT_TRIES = 3  # reads and writes of a DELETE before it answers 409 CONFLICT
log = logs.get("api.status")


def limit_param(args: Mapping[str, str], default: int, maximum: int) -> int:
    """The `limit` query parameter: an integer in 1..maximum (`default` when absent)."""
    text = args.get("limit", str(default))
    try:
        limit = int(text)
    except ValueError:  # not an integer, or more digits than Python converts
        limit = 0
    if not 1 <= limit <= maximum:
        raise ApiError(
            f"limit must be an integer in 1..{maximum}, not {excerpt(text)}.",
            f"For example ?limit={default}.",
            code="BAD_LIMIT",
            status=400,
        )
    return limit


def get_deployment(ctx: ApiContext, deployment_id: str) -> Deployment:
    record = ctx.store.get(deployment_id)
    if record is None:
        raise no_deployment(deployment_id)
    return record


def single_values(query: Mapping[str, list[str]]) -> dict[str, str]:
    """The value of each query parameter; 400 for one given more than once (no value of
    several is clearly the one meant)."""
    for key, values in query.items():
        if len(values) > 1:
            raise ApiError(
                f"The query gives {excerpt(key)} {len(values)} times.",
                "Give each parameter once; several states go in one: ?state=DEPLOYED,FAILED.",
                code="BAD_QUERY",
                status=400,
            )
    return {key: values[0] for key, values in query.items()}


def list_deployments(
    ctx: ApiContext, query: Mapping[str, list[str]], base_url: str
) -> dict[str, Any]:
    args = single_values(query)
    states = tuple(s.strip().upper() for s in args.get("state", "").split(",") if s.strip())
    unknown = [s for s in states if s not in State.__members__]
    if unknown:
        raise ApiError(
            f"Unknown state {excerpt(unknown[0])}.",
            f"Use one or more of {', '.join(State)} (comma separated).",
            code="BAD_FILTER",
            status=400,
        )
    model = args.get("model") or None
    if model is not None and not valid_name(model):
        raise ApiError(
            f"model {excerpt(model)} cannot be a model name.",
            f"A model name is a folder's name: at most {MAX_BYTES} bytes.",
            code="BAD_FILTER",
            status=400,
        )
    limit = limit_param(args, 50, MAX_PAGE)
    try:
        page, token = ctx.store.list_page(
            states=tuple(State(s) for s in states),
            model=model,
            limit=limit,
            page_token=args.get("page_token") or None,
        )
    except UsageError as exc:
        raise ApiError(
            f"page_token {excerpt(args['page_token'])} is not one this api handed out.",
            "Pass the next_page_token of the previous page unchanged.",
            code="BAD_PAGE_TOKEN",
            status=400,
        ) from exc
    return {
        "deployments": [status_body(d, base_url, ctx.clock()) for d in page],
        "next_page_token": token,
    }


def refreshed(ctx: ApiContext, record: Deployment) -> Deployment:
    """A DEPLOYING record brought up to date from its operation, at most every few seconds per
    record and instance, so pollers see DEPLOYED without waiting for reconcile's next tick."""
    if record.state is not State.DEPLOYING or not (record.operation or record.endpoint):
        return record
    if not ctx.refresh.allow(record.id):
        return record
    try:
        return poll_deploy(ctx, record) or ctx.store.get(record.id) or record
    except DeployError as exc:
        log.warning("refresh failed: %s", exc.code, extra={"deployment_id": record.id})
        return record


def deployment_status(ctx: ApiContext, deployment_id: str, base_url: str) -> dict[str, Any]:
    return status_body(refreshed(ctx, get_deployment(ctx, deployment_id)), base_url, ctx.clock())


def delete_deployment(
    ctx: ApiContext, deployment_id: str, base_url: str
) -> tuple[dict[str, Any], int]:
    """Undeploy and delete the endpoint (202 while that runs), or cancel a pending upload."""
    result = None
    for _ in range(CONFLICT_TRIES):  # a notification mark or a poll may write in between
        record = get_deployment(ctx, deployment_id)
        ctx.deployed.drop(record.id)
        try:
            result = start_delete(ctx, record)
        except ActionRefused as exc:
            raise ApiError(
                exc.message, exc.hint, code=exc.code, status=409, state=str(record.state)
            ) from None
        except DeployError as exc:  # the undeploy goes on at the next reconcile tick
            log.warning("undeploy step failed: %s", exc.code, extra={"deployment_id": record.id})
            result = ctx.store.get(record.id)
        if result is not None:
            break
    if result is None:
        raise ApiError(
            f"Deployment {deployment_id} kept changing meanwhile.",
            "Try again in a moment.",
            code="CONFLICT",
            status=409,
        )
    code = 202 if result.state is State.UNDEPLOYING else 200
    return status_body(result, base_url, ctx.clock()), code


def redeploy_deployment(
    ctx: ApiContext, deployment_id: str, base_url: str
) -> tuple[dict[str, Any], int]:
    """POST /v1/deployments/{id}:redeploy: an UNDEPLOYED deployment deploys again (202, VALIDATED)
    when its folder is unchanged; 409 NOT_UNDEPLOYED or FOLDER_CHANGED otherwise."""
    for _ in range(CONFLICT_TRIES):
        record = get_deployment(ctx, deployment_id)
        try:
            result = revisions.redeploy(ctx, record)
        except ActionRefused as exc:
            raise ApiError(
                exc.message, exc.hint, code=exc.code, status=409, state=str(record.state)
            ) from None
        except AccessError as exc:
            raise ApiError(
                f"The folder {record.gcs_uri} could not be listed: {exc.message}",
                "Try again in a moment; check the bucket's permissions if it persists.",
                code="FOLDER_UNREADABLE",
                status=503,
            ) from exc
        if result is not None:
            return status_body(result, base_url, ctx.clock()), 202
    raise ApiError(
        f"Deployment {deployment_id} kept changing meanwhile.",
        "Try again in a moment.",
        code="CONFLICT",
        status=409,
    )
