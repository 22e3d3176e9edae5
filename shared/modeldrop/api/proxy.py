"""Queries to a deployed model, proxied to the endpoint recorded in Firestore.

Nothing in a request can choose where it goes: the upstream is always the recorded endpoint
of a DEPLOYED record. Streams are passed on chunk by chunk as they arrive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from flask import Request, Response

from modeldrop import logs
from modeldrop.adapters.endpoint_client import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError, no_deployment
from modeldrop.domain.deployment import Deployment, State
from modeldrop.domain.findings import excerpt
from modeldrop.errors import ModeldropError
from modeldrop.sse import ending_with_done

log = logs.get("api.proxy")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Upstream answers passed on as they are: the request was at fault (or came too fast). Others
# (401/403: our credentials; 404: the endpoint is gone; 5xx) are the service's: 502.
CLIENT_ERRORS = frozenset({400, 413, 422, 429})
# What a request body may hold: it must also serialise again, as strict JSON, for the endpoint.
MAX_DEPTH = 64  # arrays and objects inside one another
MAX_DIGITS = 100  # in one integer


def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object: 413 over `limit` bytes; 400 when it is not JSON, not
    an object, nests deeper than MAX_DEPTH or holds a number the endpoint could not take."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    try:
        body = json.loads(
            data or b"null", parse_int=_integer, parse_float=_finite, parse_constant=_constant
        )
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:  # bad syntax, or bytes that are not UTF-8
        raise ApiError(
            f"The request body is not valid JSON: {exc}.",
            "Send a JSON object with Content-Type: application/json.",
            code="MALFORMED_JSON",
            status=400,
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            "The request body must be a JSON object.",
            "See GET /openapi.json for the body of this route.",
            code="MALFORMED_JSON",
            status=400,
        )
    if _deeper_than(body, MAX_DEPTH):
        raise too_deep()
    return body


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise bad_number(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise bad_number(f"{excerpt(text)}, beyond the range of a double")
    return value


def _constant(name: str) -> float:
    raise bad_number(f"{name}, which is not JSON")


def _deeper_than(body: dict[str, Any], limit: int) -> bool:
    """Whether `body` nests more than `limit` levels of arrays and objects (no recursion)."""
    level: list[Any] = [body]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def too_deep() -> ApiError:
    return ApiError(
        f"The request body nests arrays and objects more than {MAX_DEPTH} deep.",
        "Send a flatter body: a chat request needs a handful of levels.",
        code="BODY_TOO_DEEP",
        status=400,
    )


def bad_number(found: str) -> ApiError:
    return ApiError(
        f"The request body holds {found}.",
        f"Send finite numbers, integers of at most {MAX_DIGITS} digits.",
        code="BAD_NUMBER",
        status=400,
    )


def too_large(limit: int) -> ApiError:
    return ApiError(
        f"The request body is larger than {limit} bytes.",
        "Send a shorter prompt, or raise MODELDROP_MAX_BODY_BYTES.",
        code="BODY_TOO_LARGE",
        status=413,
    )


def deployed(ctx: ApiContext, deployment_id: str) -> Deployment:
    """The DEPLOYED record with this id: 404 when unknown, 409 (with its state) otherwise."""
    cache = ctx.deployed
    if cached := cache.get(deployment_id):
        return cached
    record = ctx.store.get(deployment_id)
    if record is None:
        raise no_deployment(deployment_id)
    return cache.put(deployment_id, require_deployed(record))


def require_deployed(record: Deployment) -> Deployment:
    if record.state is not State.DEPLOYED or not (record.endpoint and record.endpoint_dns):
        hint = {
            State.DEPLOYING: "The endpoint is still coming up; poll the status URL.",
            State.REJECTED: "Validation rejected the upload; see its findings.",
            State.FAILED: "The deploy failed; see its error and hint.",
        }.get(record.state, "Only DEPLOYED deployments answer queries.")
        raise ApiError(
            f"Deployment {record.id} is {record.state}.",
            hint,
            code="NOT_DEPLOYED",
            status=409,
            state=str(record.state),
        )
    return record


def upstream_failure(ctx: ApiContext, record: Deployment, exc: ModeldropError) -> ApiError:
    """502/504 for a failing endpoint, keeping the endpoint's status and body. An endpoint that
    is gone (404, unreachable) is looked up afresh next time."""
    if isinstance(exc, UpstreamUnreachable) or getattr(exc, "status", None) == 404:
        ctx.deployed.drop(record.id)
    if isinstance(exc, UpstreamTimeout):
        return ApiError(exc.message, exc.hint, code="UPSTREAM_TIMEOUT", status=504)
    if isinstance(exc, UpstreamError):
        body = exc.body[:4000].decode("utf-8", "replace")
        if exc.status in CLIENT_ERRORS:  # the request was refused: the caller's to fix
            return ApiError(
                f"The model endpoint refused the request (HTTP {exc.status}).",
                "See upstream_body for the reason, fix the request and send it again.",
                code="UPSTREAM_REJECTED",
                status=exc.status,
                upstream_status=exc.status,
                upstream_body=body,
            )
        return ApiError(
            f"The model endpoint answered HTTP {exc.status}.",
            exc.hint,
            code="UPSTREAM_ERROR",
            status=502,
            upstream_status=exc.status,
            upstream_body=body,
        )
    if isinstance(exc, UpstreamUnreachable):
        return ApiError(exc.message, exc.hint, code="UPSTREAM_UNREACHABLE", status=502)
    raise exc


def _guarded(chunks: Iterator[bytes], record: Deployment) -> Iterator[bytes]:
    """Upstream chunks as they arrive; a stream that breaks off still ends cleanly."""
    try:
        yield from chunks
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        log.warning("stream broke off: %s", exc.code, extra={"deployment_id": record.id})
        error = {"error": {"code": exc.code, "message": exc.message}}
        yield f"data: {json.dumps(error)}\n\n".encode()


def stream_response(chunks: Iterator[bytes], record: Deployment) -> Response:
    return Response(
        ending_with_done(_guarded(chunks, record)),
        mimetype="text/event-stream",
        headers=SSE_HEADERS,
        direct_passthrough=True,
    )


def chat(ctx: ApiContext, record: Deployment, body: dict[str, Any]) -> Response | dict[str, Any]:
    """chat/completions, unary or (with "stream": true) as a server-sent event stream."""
    endpoints = ctx.endpoints
    body = {**body, "model": body.get("model") or record.vertex_id}
    try:
        if body.get("stream"):
            return stream_response(endpoints.stream_chat_completions(record, body), record)
        return endpoints.chat_completions(record, body)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def predict(ctx: ApiContext, record: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    _require_instances(body)
    try:
        return ctx.endpoints.predict(record, body)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def stream_raw_predict(ctx: ApiContext, record: Deployment, body: dict[str, Any]) -> Response:
    """The instances' completions as a stream (every instance is asked to stream)."""
    _require_instances(body)
    body = {**body, "instances": [{**i, "stream": True} for i in body["instances"]]}
    try:
        return stream_response(ctx.endpoints.stream_raw_predict(record, body), record)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def _require_instances(body: dict[str, Any]) -> None:
    instances = body.get("instances")
    if not (
        isinstance(instances, list) and instances and all(isinstance(i, dict) for i in instances)
    ):
        raise ApiError(
            'The body needs "instances": a non-empty list of objects.',
            'For example {"instances": [{"prompt": "Hello", "max_tokens": 64}]}.',
            code="BAD_INSTANCES",
            status=400,
        )
