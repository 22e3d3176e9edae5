"""Fault mode: make the next N calls fail the way Google Cloud fails, to test retries.

Spec (env var MODELDROP_VERTEX_FAULTS, comma-separated): ``STATUS[xCOUNT][@ROUTE+ROUTE...]``,
e.g. ``503x2,429x1`` (the next 2 control-plane calls answer 503 UNAVAILABLE, then the next one
429 RESOURCE_EXHAUSTED) or ``403@deploy``. The admin route POST /emulator/faults takes the same
as JSON: ``{"status": 503, "count": 2, "routes": ["deploy"]}``. Faults fire in order; a fault
with routes waits for a call on one of them. Without routes a fault hits any control-plane
route; "query" (the dedicated-endpoint routes), "logs" (Cloud Logging's entries:list) and
"compute" (the Compute Engine routes under /compute/v1, answered in Compute Engine's error shape)
are hit only when named.

The status ``stockout`` (``stockout[xCOUNT]``, or ``{"status": "stockout", "count": N}``) is a
stockout that RecommendSpec cannot foresee: it applies to the deploy route only, and the deploy
it hits is accepted (an operation comes back as usual) and its operation fails a moment later
with Vertex AI's stockout error ("Resources are insufficient in region: R."), holding no GPUs.
Like every fault it is spent on the next matching call, even one refused for its own reasons
(a bad request, or the quota).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from modeldrop.catalog import serving_quota_metric
from modeldrop.local.vertex.checks import DEFAULT_MACHINE
from modeldrop.local.vertex.errors import RpcError, error_info, invalid

log = logging.getLogger("modeldrop.vertex")

ENV_VAR = "MODELDROP_VERTEX_FAULTS"
CONTROL_ROUTES = ("deploy", "operations", "endpoints", "undeploy", "delete")
ROUTES = (*CONTROL_ROUTES, "query", "logs", "compute")
SUPPORTED = (400, 403, 404, 409, 429, 500, 503, 504)
STOCKOUT = "stockout"  # the deploy is accepted, its operation stocks out
STOCKOUT_ROUTES = ("deploy",)

# The IAM permission each route needs (what a 403 names).
PERMISSIONS = {
    "deploy": "aiplatform.endpoints.deploy",
    "operations": "aiplatform.operations.get",
    "endpoints": "aiplatform.endpoints.get",
    "undeploy": "aiplatform.endpoints.undeploy",
    "delete": "aiplatform.endpoints.delete",
    "query": "aiplatform.endpoints.predict",
    "logs": "logging.logEntries.list",
    "compute": "compute.forwardingRules.pscCreate",
}
_STATUS = rf"(?P<status>\d{{3}}|{STOCKOUT})"
_SPEC = re.compile(_STATUS + r"(?:x(?P<count>\d+))?(?:@(?P<routes>[a-z+]+))?")


@dataclass
class Fault:
    """`count` more calls on `routes` (empty: any control-plane route) answer `status` (an HTTP
    status, or "stockout": the deploy's operation stocks out)."""

    status: int | str
    count: int = 1
    routes: tuple[str, ...] = ()

    def matches(self, route: str) -> bool:
        return route in self.routes if self.routes else route in CONTROL_ROUTES

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "count": self.count, "routes": list(self.routes)}


def make_fault(status: Any, count: Any = 1, routes: Any = ()) -> Fault:
    """A checked Fault; ValueError says what is wrong."""
    stockout = status == STOCKOUT
    if not stockout and (
        isinstance(status, bool) or not isinstance(status, int) or status not in SUPPORTED
    ):
        raise ValueError(
            f"fault status {status!r} is not supported; use one of {SUPPORTED} or {STOCKOUT!r}"
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"fault count {count!r} must be a whole number >= 1")
    if isinstance(routes, str):
        routes = [routes]
    if not isinstance(routes, list | tuple) or not all(isinstance(r, str) for r in routes):
        raise ValueError(f"fault routes {routes!r} must be a list of route names")
    if unknown := sorted(set(routes) - set(ROUTES)):
        raise ValueError(f"unknown fault routes {unknown}; choose from {list(ROUTES)}")
    if stockout:
        if other := sorted(set(routes) - set(STOCKOUT_ROUTES)):
            raise ValueError(
                f"a {STOCKOUT!r} fault applies to the deploy route only, not {other}; "
                'leave routes out or use ["deploy"]'
            )
        routes = STOCKOUT_ROUTES
    return Fault(status, count, tuple(routes))


def parse_faults(spec: str) -> list[Fault]:
    """Faults from ``503x2,429x1,403@deploy+undeploy,stockout``; ValueError on a bad item."""
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _SPEC.fullmatch(item)
        if not match:
            raise ValueError(
                f"bad fault {item!r} in {ENV_VAR}; write STATUS[xCOUNT][@ROUTE+ROUTE], "
                "e.g. 503x2,429x1, 403@deploy or stockoutx2"
            )
        routes = tuple(match["routes"].split("+")) if match["routes"] else ()
        status = match["status"]
        code = status if status == STOCKOUT else int(status)
        faults.append(make_fault(code, int(match["count"] or 1), routes))
    return faults


def faults_from_json(body: Any) -> list[Fault]:
    """The faults of a POST /emulator/faults body: one fault object, or {"faults": [...]}."""
    items = body.get("faults", [body]) if isinstance(body, dict) else body
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise invalid(
            'POST /emulator/faults takes {"status": 503, "count": 2, "routes": [...]} (or '
            '"status": "stockout").'
        )
    try:
        return [make_fault(i.get("status"), i.get("count", 1), i.get("routes", ())) for i in items]
    except ValueError as exc:
        raise invalid(str(exc)) from exc


def fault_error(status: int, route: str, resource: str, accelerator: str | None = None) -> RpcError:
    """The error Google Cloud answers for `status` on `route`, worded as the real API words it."""
    if status == 403:
        permission = PERMISSIONS[route]
        service = "logging" if route == "logs" else "aiplatform"
        return RpcError(
            f"Permission '{permission}' denied on resource '//{service}.googleapis.com/"
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
        elif route == "logs":
            quota = "logging.googleapis.com/read_requests"
            message = (
                "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
                f"minute' of service 'logging.googleapis.com' ({quota})."
            )
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
    quota = serving_quota(accelerator)
    return RpcError(
        f"Quota exceeded for {quota}: {reason}",
        http_status=429,
        details=[error_info("RATE_LIMIT_EXCEEDED", {"quota": quota})],
    )


def serving_quota(accelerator: str | None) -> str:
    """The per-region serving GPU quota metric (full name, from the machine catalog) for an
    accelerator name, e.g. NVIDIA_L4; None (a deploy body naming none): the default machine's."""
    return serving_quota_metric(accelerator or DEFAULT_MACHINE[1])


class FaultInjector:
    """Pending faults, consumed in order by matching calls, and the count of calls per route;
    thread-safe."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._faults = list(faults or [])
        self._lock = threading.Lock()
        self.fired = 0
        self._calls: Counter[str] = Counter()  # faulted calls included

    def call(self, route: str, resource: str, accelerator: str | None = None) -> str | None:
        """Count a call on `route` to `resource`; raise the next pending fault for it, if any.

        A "stockout" fault is not raised: its name, STOCKOUT, is returned for the deploy route
        to go on and stock out in its operation; otherwise None."""
        status = self.status_for(route, resource)
        if status is None or isinstance(status, str):
            return status
        raise fault_error(status, route, resource, accelerator)

    def status_for(self, route: str, resource: str) -> int | str | None:
        """Count a call on `route` and use up the next pending fault for it: its status (the
        caller answers it in its API's shape), or None."""
        with self._lock:
            self._calls[route] += 1
        status = self.take(route)
        if status is not None:
            log.info("fault: %s on %s %s", status, route, resource)
        return status

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

    def take(self, route: str) -> int | str | None:
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
