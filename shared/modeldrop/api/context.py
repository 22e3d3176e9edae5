"""What the api's handlers are given: the service context, plus the api's per-instance caches
(DEPLOYED records, status refreshes, last-use writes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modeldrop.api.cache import DeployedCache, Throttle
from modeldrop.service.context import Context

REFRESH_SECONDS = 5.0  # a DEPLOYING record is refreshed from its operation at most this often
USE_SECONDS = 60.0  # a deployment's last use is written at most this often (per instance)


@dataclass(kw_only=True)
class ApiContext(Context):
    deployed: DeployedCache
    refresh: Throttle
    uses: Throttle = field(default_factory=lambda: Throttle(USE_SECONDS))
