"""Request bodies: bounded, strict JSON objects, refused with a clear 4xx otherwise."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Request

from modeldrop.api.errors import ApiError
from modeldrop.domain.findings import excerpt

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
