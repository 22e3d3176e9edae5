"""The OpenAI-compatible surface: GET /v1/models and POST /v1/chat/completions.

`model` names a model (its serving revision) or a deployment id, so the official
`openai` client works with base_url=<api>/v1. Errors use OpenAI's error body.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from modeldrop.api import lookup, models, proxy
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError
from modeldrop.api.keys import valid_name
from modeldrop.domain.deployment import Deployment, State, shaped_like_id
from modeldrop.domain.findings import excerpt

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(error: ApiError) -> dict[str, Any]:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    message = f"{error.message} {error.hint}".strip()
    kind = ERROR_TYPES.get(error.status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": error.code.lower()}}


def list_models(ctx: ApiContext) -> dict[str, Any]:
    """Every model name whose serving revision is DEPLOYED."""
    names: set[str] = set()
    token = None
    while True:
        page, token = ctx.store.list_page(states=(State.DEPLOYED,), limit=200, page_token=token)
        names.update(record.model for record in page)
        if not token:
            break
    serving: dict[str, Deployment] = {}
    for name in sorted(names):
        try:
            record = models.serving_record(ctx, name)
        except ApiError:  # its serving revision does not answer now
            continue
        if record is not None:
            serving[name] = record
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": int(record.created_at.timestamp()),
                "owned_by": "modeldrop",
                "deployment_id": record.id,
            }
            for name, record in serving.items()
        ],
    }


def resolve(ctx: ApiContext, model: Any) -> Deployment:
    """The DEPLOYED record a request's `model` names (deployment id, else model name); a string
    that can be neither is unknown without asking the store."""
    if not isinstance(model, str) or not model:
        raise ApiError(
            'The body needs "model": a model name or a '
            f"deployment id (a string), not {excerpt(model)}.",
            "List the names with GET /v1/models.",
            code="MODEL_REQUIRED",
            status=400,
        )
    if not valid_name(model):
        raise unknown_model(model)
    if cached := ctx.deployed.get(model):
        return cached
    by_id = ctx.store.get(model) if shaped_like_id(model) else None  # a name costs no read
    if by_id is not None:
        return ctx.deployed.put(model, lookup.require_deployed(by_id))
    record = models.serving_record(ctx, model)
    if record is None:
        raise unknown_model(model)
    return record


def unknown_model(model: str) -> ApiError:
    return ApiError(
        f"The model {excerpt(model)} does not exist.",
        "List the names with GET /v1/models.",
        code="MODEL_NOT_FOUND",
        status=404,
    )


def chat_completions(ctx: ApiContext, body: dict[str, Any]) -> Response | dict[str, Any]:
    record = resolve(ctx, body.get("model"))
    return proxy.chat(ctx, record, {**body, "model": record.vertex_id})
