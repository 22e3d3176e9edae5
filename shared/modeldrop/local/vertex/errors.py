"""Errors as Google APIs send them: google.rpc.Status JSON with the matching HTTP status.

google.api_core maps the HTTP status to its exception class (400 -> InvalidArgument or
FailedPrecondition by `status`, 404 -> NotFound, 409 -> AlreadyExists/Conflict, 429 ->
TooManyRequests, 503 -> ServiceUnavailable, ...), so clients see the same errors as on Google Cloud.
"""

from __future__ import annotations

from typing import Any

from modeldrop.adapters.vertex_errors import HTTP_STATUS_NAMES
from modeldrop.errors import ModeldropError

# google.rpc.Code numbers, for errors stored in long-running operations.
RPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


class RpcError(ModeldropError):
    """An error the emulator answers as Google APIs do, `{"error": {"code", "message", "status"
    [, "details"]}}`: the base error's message, hint and code (the status name, e.g.
    INVALID_ARGUMENT; by default the HTTP status's), with the HTTP status and any details."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        code: str | None = None,
        *,
        http_status: int,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, hint, code or HTTP_STATUS_NAMES.get(http_status, "UNKNOWN"))
        self.http_status = http_status
        self.details = details or []

    @property
    def status(self) -> str:
        """The google.rpc status name."""
        return self.code

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def to_rpc_status(self) -> dict[str, Any]:
        """The error as a google.rpc.Status inside an Operation (numeric code)."""
        return {"code": RPC_CODES.get(self.status, 2), "message": self.message}


def invalid(message: str) -> RpcError:
    return RpcError(message, code="INVALID_ARGUMENT", http_status=400)


def failed_precondition(message: str) -> RpcError:
    return RpcError(message, code="FAILED_PRECONDITION", http_status=400)


def not_found(message: str) -> RpcError:
    return RpcError(message, code="NOT_FOUND", http_status=404)


def already_exists(message: str) -> RpcError:
    return RpcError(message, code="ALREADY_EXISTS", http_status=409)


def error_info(reason: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A google.rpc.ErrorInfo detail (api_core reads its `reason` and `domain`)."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "aiplatform.googleapis.com",
        "metadata": metadata,
    }
