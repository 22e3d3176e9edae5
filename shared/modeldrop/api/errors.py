"""API errors: an HTTP status, a stable code, a message for people and a hint."""

from __future__ import annotations

from typing import Any

from modeldrop.domain.findings import excerpt


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


def no_deployment(deployment_id: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Deployment {excerpt(deployment_id)} does not exist.",
                    "List them with GET /v1/deployments.")  # fmt: skip


def no_model(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Model {excerpt(name)} does not exist.",
                    "Upload it to the bucket under the models/ folder.")  # fmt: skip
