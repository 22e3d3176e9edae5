"""Fault mode: make the next N calls fail the way Google Cloud fails, to test retries.

Spec (env var MODELDROP_VERTEX_FAULTS, comma-separated): ``STATUS[xCOUNT][@ROUTE+ROUTE...]``,
e.g. ``503x2,429x1`` (the next 2 control-plane calls answer 503 UNAVAILABLE, then the next one
429 RESOURCE_EXHAUSTED) or ``403@deploy``. The admin route POST /emulator/faults takes the same
as JSON: ``{"status": 503, "count": 2, "routes": ["deploy"]}``. Faults fire in order; a fault
with routes waits for a call on one of them. Without routes a fault hits any control-plane
route; "query" (the dedicated-endpoint routes) is hit only when named.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from modeldrop.local.vertex.errors import RpcError, error_info, invalid

log = logging.getLogger("modeldrop.vertex")

ENV_VAR = "MODELDROP_VERTEX_FAULTS"
CONTROL_ROUTES = ("deploy", "operations", "endpoints", "undeploy", "delete")
ROUTES = (*CONTROL_ROUTES, "query")
SUPPORTED = (400, 403, 404, 409, 429, 500, 503, 504)

# The IAM permission each route needs (what a 403 names).
PERMISSIONS = {
    "deploy": "aiplatform.endpoints.deploy",
    "operations": "aiplatform.operations.get",
    "endpoints": "aiplatform.endpoints.get",
    "undeploy": "aiplatform.endpoints.undeploy",
    "delete": "aiplatform.endpoints.delete",
    "query": "aiplatform.endpoints.predict",
}
_SPEC = re.compile(r"(?P<status>\d{3})(?:x(?P<count>\d+))?(?:@(?P<routes>[a-z+]+))?")


@dataclass
class Fault:
    """`count` more calls on `routes` (empty: any control-plane route) answer `status`."""

    status: int
    count: int = 1
    routes: tuple[str, ...] = ()

    def matches(self, route: str) -> bool:
        return route in self.routes if self.routes else route in CONTROL_ROUTES

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "count": self.count, "routes": list(self.routes)}


def make_fault(status: Any, count: Any = 1, routes: Any = ()) -> Fault:
    """A checked Fault; ValueError says what is wrong."""
    if isinstance(status, bool) or not isinstance(status, int) or status not in SUPPORTED:
        raise ValueError(f"fault status {status!r} is not supported; use one of {SUPPORTED}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"fault count {count!r} must be a whole number >= 1")
    if isinstance(routes, str):
        routes = [routes]
    if not isinstance(routes, list | tuple) or not all(isinstance(r, str) for r in routes):
        raise ValueError(f"fault routes {routes!r} must be a list of route names")
    if unknown := sorted(set(routes) - set(ROUTES)):
        raise ValueError(f"unknown fault routes {unknown}; choose from {list(ROUTES)}")
    return Fault(status, count, tuple(routes))


def parse_faults(spec: str) -> list[Fault]:
    """Faults from ``503x2,429x1,403@deploy+undeploy``; ValueError on a bad item."""
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _SPEC.fullmatch(item)
        if not match:
            raise ValueError(
                f"bad fault {item!r} in {ENV_VAR}; write STATUS[xCOUNT][@ROUTE+ROUTE], "
                "e.g. 503x2,429x1 or 403@deploy"
            )
        routes = tuple(match["routes"].split("+")) if match["routes"] else ()
        faults.append(make_fault(int(match["status"]), int(match["count"] or 1), routes))
    return faults


def faults_from_json(body: Any) -> list[Fault]:
    """The faults of a POST /emulator/faults body: one fault object, or {"faults": [...]}."""
    items = body.get("faults", [body]) if isinstance(body, dict) else body
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise invalid('POST /emulator/faults takes {"status": 503, "count": 2, "routes": [...]}.')
    try:
        return [make_fault(i.get("status"), i.get("count", 1), i.get("routes", ())) for i in items]
    except ValueError as exc:
        raise invalid(str(exc)) from exc


def fault_error(status: int, route: str, resource: str, accelerator: str | None = None) -> RpcError:
    """The error Google Cloud answers for `status` on `route`, worded as the real API words it."""
    if status == 403:
        permission = PERMISSIONS[route]
        return RpcError(
            f"Permission '{permission}' denied on resource '//aiplatform.googleapis.com/"
            f"{resource}' (or it may not exist).",
            http_status=403,
            details=[error_info("IAM_PERMISSION_DENIED", {"permission": permission})],
        )
    if status == 429:
        if route == "deploy":
            return serving_quota_error(
                accelerator,
                "the deploy needs more GPUs than the region's remaining quota. Request a quota "
                "increase or pick a smaller machine.",
            )
        if route == "query":
            quota = "aiplatform.googleapis.com/online_prediction_requests_per_base_model"
            message = f"Quota exceeded for {quota}. Retry with backoff."
        else:
            quota = "aiplatform.googleapis.com/resource_management_requests"
            message = (
                "Quota exceeded for quota metric 'Resource management (CRUD) requests' and limit "
                f"'Resource management (CRUD) requests per minute per region' ({quota})."
            )
        return RpcError(
            message, http_status=429, details=[error_info("RATE_LIMIT_EXCEEDED", {"quota": quota})]
        )
    messages = {
        400: "Request contains an invalid argument.",
        404: f"{resource} not found.",
        409: f"{resource} already exists.",
        500: "Internal error encountered.",
        503: "The service is currently unavailable.",
        504: "Deadline expired before operation could complete.",
    }
    return RpcError(f"{messages[status]} (injected fault)", http_status=status)


def serving_quota_error(accelerator: str | None, reason: str) -> RpcError:
    """429 RESOURCE_EXHAUSTED naming the serving GPU quota metric a deploy exceeds."""
    quota = f"aiplatform.googleapis.com/{serving_quota(accelerator)}"
    return RpcError(
        f"Quota exceeded for {quota}: {reason}",
        http_status=429,
        details=[error_info("RATE_LIMIT_EXCEEDED", {"quota": quota})],
    )


def serving_quota(accelerator: str | None) -> str:
    """The per-region serving GPU quota metric for an accelerator name, e.g. NVIDIA_L4."""
    names = {
        "NVIDIA_L4": "nvidia_l4",
        "NVIDIA_TESLA_A100": "nvidia_a100",
        "NVIDIA_A100_80GB": "nvidia_a100_80gb",
        "NVIDIA_H100_80GB": "nvidia_h100",
        "NVIDIA_H100_MEGA_80GB": "nvidia_h100_mega",
        "NVIDIA_H200_141GB": "nvidia_h200",
        "NVIDIA_B200": "nvidia_b200",
    }
    return f"custom_model_serving_{names.get(accelerator or '', 'nvidia_l4')}_gpus"


class FaultInjector:
    """Pending faults, consumed in order by matching calls, and the count of calls per route;
    thread-safe."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._faults = list(faults or [])
        self._lock = threading.Lock()
        self.fired = 0
        self._calls: Counter[str] = Counter()  # faulted calls included

    def call(self, route: str, resource: str, accelerator: str | None = None) -> None:
        """Count a call on `route` to `resource`; raise the next pending fault for it, if any."""
        with self._lock:
            self._calls[route] += 1
        status = self.take(route)
        if status is not None:
            log.info("fault: %s on %s %s", status, route, resource)
            raise fault_error(status, route, resource, accelerator)

    def report(self) -> dict[str, Any]:
        """Calls per route, deploy calls, pending and fired faults (for /emulator/state)."""
        with self._lock:
            calls = dict(self._calls)
        return {
            "calls": calls,
            "deploy_calls": calls.get("deploy", 0),
            "faults": self.pending(),
            "faults_fired": self.fired,
        }

    def add(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def take(self, route: str) -> int | None:
        """The status of the first pending fault matching `route` (using it up), or None."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(route):
                    fault.count -= 1
                    if fault.count == 0:
                        del self._faults[index]
                    self.fired += 1
                    return fault.status
        return None
