"""The HTTP entry of the api function: route, call the handler, answer JSON (or a stream)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Request, Response

from modeldrop import logs
from modeldrop.api import status
from modeldrop.api.errors import ApiError
from modeldrop.api.routes import ROUTES, match
from modeldrop.service.context import Context

log = logs.get("api")


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(body), status=status_code, mimetype="application/json")


@cache
def _context() -> Context:
    from modeldrop.bootstrap import context

    return context()


def _handlers(ctx: Context, request: Request, base_url: str) -> dict[str, Any]:
    query = request.args.to_dict()
    return {
        "health": lambda: {"status": "ok"},
        "list_deployments": lambda: status.list_deployments(ctx, query, base_url),
        "deployment_status": lambda deployment_id: status.deployment_status(
            ctx, deployment_id, base_url
        ),
        "model_status": lambda name: status.model_status(ctx, name, base_url),
    }


def handle(request: Request, ctx: Context | None = None) -> Response:
    """Answer one request; every failure becomes a JSON error with a status and a hint."""
    route, params, known = match(request.method, request.path, ROUTES)
    try:
        if route is None:
            if known:
                raise ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here.")
            raise ApiError(404, "NO_SUCH_ROUTE", f"No route {request.path}.",
                           "See GET /openapi.json for the routes.")  # fmt: skip
        handler = _handlers(ctx or _context(), request, request.host_url)[route.name]
        result = handler(**params)
        return result if isinstance(result, Response) else json_response(result)
    except ApiError as exc:
        return json_response(exc.body(), exc.status)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        error = ApiError(500, "INTERNAL", "The api failed unexpectedly.", "Try again; see logs.")
        return json_response(error.body(), 500)
