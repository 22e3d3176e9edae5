"""What the api's handlers are given: the service context, plus the api's per-instance caches
(DEPLOYED records, status refreshes, last-use writes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modeldrop.api.cache import DeployedCache, Throttle, TtlCache
from modeldrop.domain.revisions import ModelPointer
from modeldrop.service.context import Context

REFRESH_SECONDS = 5.0  # a DEPLOYING record is refreshed from its operation at most this often
# a model name's pointer is reused this long per instance; a replaced revision keeps its
# endpoint longer than that (domain.revisions.MIN_GRACE_SECONDS), so no request goes to one gone
POINTER_SECONDS = 1.0
USE_SECONDS = 60.0  # a deployment's last use is written at most this often (per instance)


@dataclass(kw_only=True)
class ApiContext(Context):
    deployed: DeployedCache
    refresh: Throttle
    uses: Throttle = field(default_factory=lambda: Throttle(USE_SECONDS))
    pointers: TtlCache[ModelPointer] = field(default_factory=lambda: TtlCache(POINTER_SECONDS))
