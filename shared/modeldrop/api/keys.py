"""What a deployment id or a model name can be: the one rule the api applies (anything else is
404 before any store call) and the Firestore store applies (it never asks Firestore about
anything else, so no request can make Firestore raise).

Ids come from `domain.deployment.deployment_id` ([a-z0-9-], at most 53 characters); a model name
is a folder's last segment, part of a GCS object name (at most 1,024 bytes). Firestore refuses a
document id over 1,500 bytes, holding '/', being '.' or '..', or matching __.*__, and a query on
a string value of 1,500 bytes or more. The rule lives here rather than in the Firestore adapter
so that loading the api imports no Firestore SDK.
"""

from __future__ import annotations

import re
from typing import TypeGuard

MAX_BYTES = 1024  # the longest GCS object name: no folder's name is longer
RESERVED_ID = re.compile(r"__.*__", re.DOTALL)


def valid_name(value: object) -> TypeGuard[str]:
    """Whether `value` can be a model name: a string of 1..MAX_BYTES bytes of UTF-8 (a lone
    surrogate, which a JSON body may hold, is not UTF-8)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_BYTES:
        return False
    try:
        return len(value.encode("utf-8")) <= MAX_BYTES
    except UnicodeEncodeError:
        return False


def valid_id(value: object) -> TypeGuard[str]:
    """Whether `value` can be a deployment id: a name that Firestore takes as a document id."""
    return (
        valid_name(value)
        and "/" not in value
        and value not in (".", "..")
        and not RESERVED_ID.fullmatch(value)
    )
