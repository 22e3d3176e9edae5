"""Per-instance caches of the api: DEPLOYED records for the proxy routes, model names' serving
pointers (a second at most: see domain.revisions.MIN_GRACE_SECONDS), and a throttle.

A short-lived cache of DEPLOYED records for the proxy routes.

Reading the record costs a Firestore round trip per query (2-3 ms on the emulator, more on
Google Cloud); a DEPLOYED record rarely changes, so the proxy reuses it for a few seconds
(MODELDROP_RECORD_CACHE_SECONDS, 0 turns it off). Only records that passed the DEPLOYED check
are cached; DELETE and a vanished upstream drop the entry at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from modeldrop.domain.deployment import Deployment

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Values kept for `seconds` per key (0 keeps nothing), per instance, thread-safe."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or self.clock() - entry[0] > self.seconds:
            return None
        return entry[1]

    def put(self, key: str, value: T) -> T:
        if self.seconds > 0:
            with self._lock:
                self._entries[key] = (self.clock(), value)
        return value


class DeployedCache(TtlCache[Deployment]):
    """DEPLOYED records by deployment id (or model name)."""

    def drop(self, deployment_id: str) -> None:
        """Forget every entry (by id or by model name) that holds this deployment."""
        with self._lock:
            for key in [k for k, (_, r) in self._entries.items() if r.id == deployment_id]:
                del self._entries[key]


class Throttle:
    """Lets one call per key through every `seconds` (per instance, thread-safe)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, seconds: float | None = None) -> bool:
        """Whether a call for `key` may go now (`seconds`: this call's interval, if not the
        throttle's own)."""
        interval = self.seconds if seconds is None else seconds
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, now - interval) < interval:
                return False
            self._last[key] = now
            return True
