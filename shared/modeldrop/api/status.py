"""Status routes: list deployments, one deployment, the newest revision of a model."""

from __future__ import annotations

from typing import Any

from modeldrop.api.errors import ApiError, not_found
from modeldrop.api.views import status_body
from modeldrop.domain.deployment import Deployment, State
from modeldrop.errors import UsageError
from modeldrop.service.context import Context

MAX_PAGE = 200


def get_deployment(ctx: Context, deployment_id: str) -> Deployment:
    record = ctx.store.get(deployment_id)
    if record is None:
        raise not_found(f"Deployment {deployment_id!r}")
    return record


def list_deployments(ctx: Context, query: dict[str, str], base_url: str) -> dict[str, Any]:
    states = tuple(s.strip().upper() for s in query.get("state", "").split(",") if s.strip())
    unknown = [s for s in states if s not in State.__members__]
    if unknown:
        raise ApiError(
            400, "BAD_FILTER", f"Unknown state {unknown[0]!r}.",
            f"Use one or more of {', '.join(State)} (comma separated).",
        )  # fmt: skip
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "BAD_LIMIT", f"limit must be 1..{MAX_PAGE}.", "For example ?limit=50.")
    try:
        page, token = ctx.store.list(
            states=tuple(State(s) for s in states),
            model=query.get("model") or None,
            limit=limit,
            page_token=query.get("page_token") or None,
        )
    except UsageError as exc:
        raise ApiError(
            400,
            "BAD_PAGE_TOKEN",
            "page_token is not one this API handed out.",
            "Pass the next_page_token of the previous page unchanged.",
        ) from exc
    return {
        "deployments": [status_body(d, base_url) for d in page],
        "next_page_token": token,
    }


def deployment_status(ctx: Context, deployment_id: str, base_url: str) -> dict[str, Any]:
    return status_body(get_deployment(ctx, deployment_id), base_url)


def model_status(ctx: Context, name: str, base_url: str) -> dict[str, Any]:
    record = ctx.store.latest_for_model(name)
    if record is None:
        raise not_found(f"Model {name!r}", "Upload it to the bucket under the models/ folder.")
    return status_body(record, base_url)
