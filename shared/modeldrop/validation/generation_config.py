"""Check generation_config.json: a JSON object whose known fields have the types serving needs.

The field -> kind table is catalog data (serving.json generation_config_fields); this module
knows what each kind accepts. null is accepted for every field, unlisted fields are not checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from modeldrop.domain.findings import Finding, error, excerpt

MAX_ID = 2**31 - 1  # token ids are u32 in tokenizers; vLLM and torch index with int32/int64
MAX_LIST = 1024
SHOWN = 5
HINT = (
    "Save it with model.generation_config.save_pretrained(folder) (transformers checks the "
    "types), or fix the listed values by hand."
)


def _int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _token_ids(value: Any) -> bool:
    if isinstance(value, list):
        return 0 < len(value) <= MAX_LIST and all(_int(v, 0, MAX_ID) for v in value)
    return _int(value, 0, MAX_ID)


def _number(value: Any) -> bool:
    if type(value) is int:
        return abs(value) <= 2**53  # compared as an int: a float of 10**400 would overflow
    return type(value) is float and math.isfinite(value)


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "token_id": (lambda v: _int(v, 0, MAX_ID), "a token id (an integer from 0 to 2**31-1)"),
    "token_ids": (_token_ids, f"a token id or a list of at most {MAX_LIST} token ids"),
    "int": (lambda v: _int(v, -MAX_ID - 1, MAX_ID), "an integer"),
    "count": (lambda v: _int(v, 0, MAX_ID), "an integer from 0 to 2**31-1"),
    "number": (_number, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "string": (lambda v: isinstance(v, str), "a string"),
}


def check_generation_config(
    data: bytes, name: str, fields: dict[str, str]
) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The document when it is usable (a JSON object with well-typed fields), and the findings."""
    try:
        document: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        problem = f"is not valid UTF-8 JSON ({type(exc).__name__})"
        return None, [error("GENERATION_CONFIG_INVALID", f"{name} {problem}.", name, HINT)]
    if not isinstance(document, dict):
        problem = f"holds a JSON {type(document).__name__}, not an object"
        return None, [error("GENERATION_CONFIG_INVALID", f"{name} {problem}.", name, HINT)]
    wrong = []
    for key, kind in fields.items():
        value = document.get(key)
        accepts, expected = KINDS[kind]
        if value is not None and not accepts(value):
            wrong.append(f"{key} is {excerpt(value, 60)} (expected {expected})")
    if not wrong:
        return document, []
    more = f"; and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
    message = (
        f"{name} has values of the wrong type: {'; '.join(wrong[:SHOWN])}{more}. Serving loads "
        "it with transformers' GenerationConfig and would fail or ignore them."
    )
    return None, [error("GENERATION_CONFIG_INVALID", message, name, HINT)]
