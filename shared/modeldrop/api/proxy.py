"""Queries to a deployed model, proxied to the endpoint recorded in Firestore.

Nothing in a request can choose where it goes: the upstream is always the recorded endpoint
of a DEPLOYED record. Streams are passed on chunk by chunk as they arrive. Every answer names
the deployment that gave it (X-Modeldrop-Deployment), so a client can tell which revision
answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Response

from modeldrop import logs
from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError
from modeldrop.api.usage import record_use
from modeldrop.domain.deployment import Deployment
from modeldrop.errors import ModeldropError
from modeldrop.service.ports import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from modeldrop.sse import ending_with_done

log = logs.get("api.proxy")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DEPLOYMENT_HEADER = "X-Modeldrop-Deployment"
# Upstream answers passed on as they are: the request was at fault (or came too fast). Others
# (401/403: our credentials; 404: the endpoint is gone; 5xx) are the service's: 502.
CLIENT_ERRORS = frozenset({400, 413, 422, 429})


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
        headers={**SSE_HEADERS, DEPLOYMENT_HEADER: record.id},
        direct_passthrough=True,
    )


def answer(body: dict[str, Any], record: Deployment) -> Response:
    """A unary answer of the endpoint, as JSON naming the deployment that gave it."""
    return Response(
        json.dumps(body),
        mimetype="application/json",
        headers={DEPLOYMENT_HEADER: record.id},
    )


def chat(ctx: ApiContext, record: Deployment, body: dict[str, Any]) -> Response:
    """chat/completions, unary or (with "stream": true) as a server-sent event stream."""
    record_use(ctx, record)
    endpoints = ctx.endpoints
    body = {**body, "model": body.get("model") or record.vertex_id}
    try:
        if body.get("stream"):
            return stream_response(endpoints.stream_chat_completions(record, body), record)
        return answer(endpoints.chat_completions(record, body), record)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def predict(ctx: ApiContext, record: Deployment, body: dict[str, Any]) -> Response:
    _require_instances(body)
    record_use(ctx, record)
    try:
        return answer(ctx.endpoints.predict(record, body), record)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def stream_raw_predict(ctx: ApiContext, record: Deployment, body: dict[str, Any]) -> Response:
    """The instances' completions as a stream (every instance is asked to stream)."""
    _require_instances(body)
    record_use(ctx, record)
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
