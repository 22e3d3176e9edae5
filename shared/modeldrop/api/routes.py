"""The route table: (method, path pattern) -> handler. Patterns are data, matched in order."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    openai: bool = False  # errors in OpenAI's shape
    path: str = ""  # the documented path, {param} placeholders kept (auth.PUBLIC_PATHS)


def route(method: str, path: str, name: str, openai: bool = False) -> Route:
    """`path` uses {param} placeholders matching one segment (no '/' and no ':')."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/:]+)", path)
    return Route(method, re.compile(f"^{regex}$"), name, openai, path)


ROUTES: list[Route] = [
    route("GET", "/healthz", "health"),
    route("GET", "/openapi.json", "openapi"),
    route("GET", "/ui", "ui"),
    route("GET", "/ui/{asset}", "ui_asset"),
    route("GET", "/v1/deployments", "list_deployments"),
    route("GET", "/v1/costs", "costs"),
    route("GET", "/v1/deployments/{deployment_id}", "deployment_status"),
    route("DELETE", "/v1/deployments/{deployment_id}", "delete_deployment"),
    route("POST", "/v1/deployments/{deployment_id}:redeploy", "redeploy_deployment"),
    route("GET", "/v1/deployments/{deployment_id}/logs", "deployment_logs"),
    route("POST", "/v1/deployments/{deployment_id}/chat/completions", "chat"),
    route("POST", "/v1/deployments/{deployment_id}:predict", "predict"),
    route("POST", "/v1/deployments/{deployment_id}:streamRawPredict", "stream_raw_predict"),
    route("GET", "/v1/models", "openai_models", openai=True),
    route("POST", "/v1/chat/completions", "openai_chat", openai=True),
    route("GET", "/v1/models/{name}", "model_status"),
    route("POST", "/v1/models/{name}:rollback", "rollback_model"),
]


def match(method: str, path: str, routes: list[Route]) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path params, path known under another method)."""
    known = False
    for candidate in routes:
        found = candidate.pattern.match(path)
        if found:
            if candidate.method == method:
                return candidate, found.groupdict(), True
            known = True
    return None, {}, known
