"""Queries to a deployed model, proxied to the endpoint recorded in Firestore.

Nothing in a request can choose where it goes: the upstream is always the recorded endpoint
of a DEPLOYED record. Streams are passed on chunk by chunk as they arrive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Request, Response

from modeldrop import logs
from modeldrop.adapters.endpoint_client import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from modeldrop.api.cache import DeployedCache
from modeldrop.api.errors import ApiError, not_found
from modeldrop.domain.deployment import Deployment, State
from modeldrop.errors import ModeldropError
from modeldrop.service.context import Context
from modeldrop.sse import ending_with_done

log = logs.get("api.proxy")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Upstream answers passed on as they are: the request was at fault (or came too fast). Others
# (401/403: our credentials; 404: the endpoint is gone; 5xx) are the service's: 502.
CLIENT_ERRORS = frozenset({400, 413, 422, 429})


def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object: 413 over `limit` bytes, 400 when not an object."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    try:
        body = json.loads(data or b"null")
    except (ValueError, RecursionError):
        raise ApiError(
            400, "MALFORMED_JSON", "The request body is not valid JSON.",
            "Send a JSON object with Content-Type: application/json.",
        ) from None  # fmt: skip
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_JSON", "The request body must be a JSON object.",
                       "See GET /openapi.json for the body of this route.")  # fmt: skip
    return body


def too_large(limit: int) -> ApiError:
    return ApiError(413, "BODY_TOO_LARGE", f"The request body is larger than {limit} bytes.",
                    "Send a shorter prompt, or raise MODELDROP_MAX_BODY_BYTES.")  # fmt: skip


def deployed_cache(ctx: Context) -> DeployedCache:
    return ctx.memo.setdefault("deployed", DeployedCache(ctx.settings.record_cache_seconds))


def deployed(ctx: Context, deployment_id: str) -> Deployment:
    """The DEPLOYED record with this id: 404 when unknown, 409 (with its state) otherwise."""
    cache = deployed_cache(ctx)
    if cached := cache.get(deployment_id):
        return cached
    record = ctx.store.get(deployment_id)
    if record is None:
        raise not_found(f"Deployment {deployment_id!r}")
    return cache.put(deployment_id, require_deployed(record))


def require_deployed(record: Deployment) -> Deployment:
    if record.state is not State.DEPLOYED or not (record.endpoint and record.endpoint_dns):
        hint = {
            State.DEPLOYING: "The endpoint is still coming up; poll the status URL.",
            State.REJECTED: "Validation rejected the upload; see its findings.",
            State.FAILED: "The deploy failed; see its error and hint.",
        }.get(record.state, "Only DEPLOYED deployments answer queries.")
        raise ApiError(409, "NOT_DEPLOYED", f"Deployment {record.id} is {record.state}.", hint,
                       state=str(record.state))  # fmt: skip
    return record


def upstream_failure(ctx: Context, record: Deployment, exc: ModeldropError) -> ApiError:
    """502/504 for a failing endpoint, keeping the endpoint's status and body. An endpoint that
    is gone (404, unreachable) is looked up afresh next time."""
    if isinstance(exc, UpstreamUnreachable) or getattr(exc, "status", None) == 404:
        deployed_cache(ctx).drop(record.id)
    if isinstance(exc, UpstreamTimeout):
        return ApiError(504, "UPSTREAM_TIMEOUT", exc.message, exc.hint)
    if isinstance(exc, UpstreamError):
        body = exc.body[:4000].decode("utf-8", "replace")
        if exc.status in CLIENT_ERRORS:  # the request was refused: the caller's to fix
            return ApiError(exc.status, "UPSTREAM_REJECTED",
                            f"The model endpoint refused the request (HTTP {exc.status}).",
                            "See upstream_body for the reason, fix the request and send it again.",
                            upstream_status=exc.status, upstream_body=body)  # fmt: skip
        return ApiError(502, "UPSTREAM_ERROR", f"The model endpoint answered HTTP {exc.status}.",
                        exc.hint, upstream_status=exc.status, upstream_body=body)  # fmt: skip
    if isinstance(exc, UpstreamUnreachable):
        return ApiError(502, "UPSTREAM_UNREACHABLE", exc.message, exc.hint)
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


def chat(ctx: Context, record: Deployment, body: dict[str, Any]) -> Response | dict[str, Any]:
    """chat/completions, unary or (with "stream": true) as a server-sent event stream."""
    endpoints = ctx.endpoints
    body = {**body, "model": body.get("model") or record.model_user_id}
    try:
        if body.get("stream"):
            return stream_response(endpoints.stream_chat_completions(record, body), record)
        return endpoints.chat_completions(record, body)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def predict(ctx: Context, record: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    _require_instances(body)
    try:
        return ctx.endpoints.predict(record, body)
    except (UpstreamTimeout, UpstreamError, UpstreamUnreachable) as exc:
        raise upstream_failure(ctx, record, exc) from exc


def stream_raw_predict(ctx: Context, record: Deployment, body: dict[str, Any]) -> Response:
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
            400, "BAD_INSTANCES", 'The body needs "instances": a non-empty list of objects.',
            'For example {"instances": [{"prompt": "Hello", "max_tokens": 64}]}.',
        )  # fmt: skip
