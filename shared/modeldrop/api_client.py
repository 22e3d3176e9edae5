"""A small client of the api function, for `modeldrop status`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from modeldrop.errors import AccessError, UsageError

STACK_FILE = Path(".modeldrop/stack.json")
SETTLED = {"DEPLOYED", "REJECTED", "FAILED", "UNDEPLOYED", "SUPERSEDED"}


def api_url(explicit: str | None = None) -> str:
    """--api, else MODELDROP_API_URL, else the local stack's .modeldrop/stack.json."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("MODELDROP_API_URL"):
        return os.environ["MODELDROP_API_URL"].rstrip("/")
    if STACK_FILE.exists():
        return json.loads(STACK_FILE.read_text())["api_url"].rstrip("/")
    raise UsageError(
        "No api URL: none given and no local stack is running.",
        "Pass --api URL, set MODELDROP_API_URL, or start the local stack with `make up`.",
    )


class ApiClient:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        token = token or os.environ.get("MODELDROP_API_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            response = self.session.get(f"{self.base}{path}", timeout=30)
        except requests.RequestException as exc:
            raise AccessError(
                f"Cannot reach the api at {self.base}: {type(exc).__name__}.",
                "Check the URL; for the local stack run `make up` first.",
            ) from exc
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": {"message": response.text[:500]}}

    def _lookup(self, target: str | None) -> tuple[int, Any]:
        if target is None:
            return self.get("/v1/deployments?limit=50")
        quoted = quote(target, safe="")  # a name with '/', '?' or '#' stays one path segment
        code, body = self.get(f"/v1/deployments/{quoted}")
        return self.get(f"/v1/models/{quoted}") if code == 404 else (code, body)

    def status(self, target: str | None) -> dict[str, Any]:
        """All deployments, or one by deployment id or model name."""
        code, body = self._lookup(target)
        if code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise UsageError(
                error.get("message", f"HTTP {code}"), error.get("hint", ""), code="API_ERROR"
            )
        return body

    def watch(
        self, target: str, interval: float = 2.0, sleep: Callable[[float], None] = time.sleep
    ) -> Iterator[dict[str, Any]]:
        """Yield the status each time its state changes, until it settles. A model not known yet
        (its upload is still running) is waited for."""
        last = None
        while True:
            code, _ = self._lookup(target)
            if code == 404:
                sleep(interval)
                continue
            body = self.status(target)
            if body["state"] != last:
                last = body["state"]
                yield body
            if last in SETTLED:
                return
            sleep(interval)
