"""Errors as Google APIs send them: google.rpc.Status JSON with the matching HTTP status.

google.api_core maps the HTTP status to its exception class (400 -> InvalidArgument or
FailedPrecondition by `status`, 404 -> NotFound, 409 -> AlreadyExists/Conflict, 429 ->
TooManyRequests, 503 -> ServiceUnavailable, ...), so clients see the same errors as on Google Cloud.
"""

from __future__ import annotations

from typing import Any

# HTTP status -> the canonical google.rpc.Code name Google's REST front end pairs it with.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
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


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message", "status"[, "details"]}}`."""

    def __init__(
        self,
        http_status: int,
        message: str,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status or STATUS_NAMES.get(http_status, "UNKNOWN")
        self.details = details or []

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


def invalid(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, message, "FAILED_PRECONDITION")


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "NOT_FOUND")


def already_exists(message: str) -> ApiError:
    return ApiError(409, message, "ALREADY_EXISTS")


def error_info(reason: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A google.rpc.ErrorInfo detail (api_core reads its `reason` and `domain`)."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "aiplatform.googleapis.com",
        "metadata": metadata,
    }
