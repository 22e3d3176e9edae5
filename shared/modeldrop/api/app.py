"""The HTTP entry of the api function: authenticate, route, call the handler, answer JSON or a
stream. Every failure is a JSON error with a status, a stable code and a hint; request bodies
and tokens never reach the logs. Links in answers start with MODELDROP_API_BASE_URL, never
with the request's Host header."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from flask import Request, Response

from modeldrop import logs
from modeldrop.api import costs, lookup, models, openai, proxy, status, ui
from modeldrop.api import logs as serving_logs
from modeldrop.api.auth import check_bearer
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError, no_deployment, no_model
from modeldrop.api.keys import valid_id, valid_name
from modeldrop.api.request_body import read_json
from modeldrop.api.routes import ROUTES, Route, match
from modeldrop.domain.findings import excerpt

log = logs.get("api")


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(body), status=status_code, mimetype="application/json")


@cache
def _context() -> ApiContext:
    from modeldrop.bootstrap import api_context

    return api_context()


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI description of every route (a data file beside this module)."""
    return json.loads(resources.files(__package__).joinpath("openapi.json").read_text())


def _handlers(ctx: ApiContext, request: Request) -> dict[str, Callable[..., Any]]:
    base = ctx.settings.api_base_url
    limit = ctx.settings.max_body_bytes

    def body() -> dict[str, Any]:
        return read_json(request, limit)

    return {
        "health": lambda: {"status": "ok"},
        "openapi": openapi_document,
        "ui": ui.page,  # the files are read on the first request for them, not at import
        "ui_asset": ui.asset,
        "list_deployments": lambda: status.list_deployments(
            ctx, request.args.to_dict(flat=False), base
        ),
        "costs": lambda: costs.costs(ctx),
        "deployment_status": lambda deployment_id: status.deployment_status(
            ctx, deployment_id, base
        ),
        "delete_deployment": lambda deployment_id: status.delete_deployment(
            ctx, deployment_id, base
        ),
        "deployment_logs": lambda deployment_id: serving_logs.deployment_logs(
            ctx, deployment_id, request.args.to_dict(flat=False)
        ),
        "redeploy_deployment": lambda deployment_id: status.redeploy_deployment(
            ctx, deployment_id, base
        ),
        "model_status": lambda name: models.model_status(ctx, name, base),
        "rollback_model": lambda name: models.rollback(ctx, name, base),
        "chat": lambda deployment_id: proxy.chat(ctx, lookup.deployed(ctx, deployment_id), body()),
        "predict": lambda deployment_id: proxy.predict(
            ctx, lookup.deployed(ctx, deployment_id), body()
        ),
        "stream_raw_predict": lambda deployment_id: proxy.stream_raw_predict(
            ctx, lookup.deployed(ctx, deployment_id), body()
        ),
        "openai_models": lambda: openai.list_models(ctx),
        "openai_chat": lambda: openai.chat_completions(ctx, body()),
    }


def known_keys(params: dict[str, str]) -> dict[str, str]:
    """The path parameters; 404 for an id or name that no record can have (no store call)."""
    deployment_id, name = params.get("deployment_id"), params.get("name")
    if deployment_id is not None and not valid_id(deployment_id):
        raise no_deployment(deployment_id)
    if name is not None and not valid_name(name):
        raise no_model(name)
    return params


def _error(error: ApiError, route: Route | None) -> Response:
    body = openai.error_body(error) if route and route.openai else error.body()
    return json_response(body, error.status)


def handle(request: Request, ctx: ApiContext | None = None) -> Response:
    """Answer one request."""
    started = time.perf_counter()
    route, params, known = match(request.method, request.path, ROUTES)
    try:
        if route is None:
            if known:
                raise ApiError(
                    f"Method {excerpt(request.method)} is not allowed here.",
                    "See GET /openapi.json for the routes.",
                    code="METHOD_NOT_ALLOWED",
                    status=405,
                )
            raise ApiError(
                f"No route {excerpt(request.path)}.",
                "See GET /openapi.json for the routes.",
                code="NO_SUCH_ROUTE",
                status=404,
            )
        ctx = ctx or _context()
        check_bearer(request.headers.get("Authorization"), ctx.settings.api_tokens, route.path)
        result = _handlers(ctx, request)[route.name](**known_keys(params))
        if isinstance(result, Response):
            response = result
        elif isinstance(result, tuple):
            response = json_response(*result)
        else:
            response = json_response(result)
    except ApiError as exc:
        response = _error(exc, route)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        failure = ApiError(
            "The api failed unexpectedly.", "Try again; see logs.", code="INTERNAL", status=500
        )
        response = _error(failure, route)
    log.info(
        "%s %s -> %d",
        request.method,
        request.path,
        response.status_code,
        extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)},
    )
    return response
