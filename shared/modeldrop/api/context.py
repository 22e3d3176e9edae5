"""What the api's handlers are given: the service context, plus the api's per-instance caches
(DEPLOYED records, status refreshes)."""

from __future__ import annotations

from dataclasses import dataclass

from modeldrop.api.cache import DeployedCache, Throttle
from modeldrop.service.context import Context

REFRESH_SECONDS = 5.0  # a DEPLOYING record is refreshed from its operation at most this often


@dataclass(kw_only=True)
class ApiContext(Context):
    deployed: DeployedCache
    refresh: Throttle
