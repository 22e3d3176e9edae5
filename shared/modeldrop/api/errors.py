"""API errors: an HTTP status, a stable code, a message for people and a hint."""

from __future__ import annotations

from typing import Any

from modeldrop.domain.findings import excerpt
from modeldrop.errors import ModeldropError


class ApiError(ModeldropError):
    """A request the api answers with an error: the base error's message, hint and code, plus
    the HTTP `status` and any `extra` fields of the JSON body."""

    def __init__(
        self, message: str, hint: str = "", code: str | None = None, *, status: int, **extra: Any
    ) -> None:
        super().__init__(message, hint, code)
        self.status = status
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
    return ApiError(
        f"Deployment {excerpt(deployment_id)} does not exist.",
        "List them with GET /v1/deployments.",
        code="NOT_FOUND",
        status=404,
    )


def no_model(name: str) -> ApiError:
    return ApiError(
        f"Model {excerpt(name)} does not exist.",
        "Upload it to the bucket under the models/ folder.",
        code="NOT_FOUND",
        status=404,
    )
