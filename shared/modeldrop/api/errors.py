"""API errors: an HTTP status, a stable code, a message for people and a hint."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, hint: str = "", **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "status": self.status,
                "code": self.code,
                "message": self.message,
                "hint": self.hint,
                **self.extra,
            }
        }


def not_found(what: str, hint: str = "List them with GET /v1/deployments.") -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} does not exist.", hint)
