"""What every handler is given: settings, adapters behind ports, a clock."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modeldrop.domain.findings import excerpt
from modeldrop.domain.folder import Folder
from modeldrop.service.index_cache import IndexCache
from modeldrop.service.ports import (
    Deployer,
    DeploymentStore,
    EndpointClient,
    EventPublisher,
    PrivateNetwork,
    ServingLogs,
    WorkQueue,
)
from modeldrop.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


def describe(exc: BaseException) -> str:
    """An exception for a log line: its type, where it was raised and a short excerpt of its
    message (which may quote the input it failed on)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}: {excerpt(str(exc))}"


@dataclass
class Context:
    """The settings, the adapters behind their ports and the per-instance caches of a handler."""

    settings: Settings
    store: DeploymentStore
    events: EventPublisher
    queue: WorkQueue
    deployer: Deployer
    open_folder: Callable[[str], Folder]
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = field(default=time.sleep)
    index_cache: IndexCache = field(default_factory=IndexCache)
    # the deployed model's endpoint and its server's log (smoke test, error.logs, /logs)
    endpoints: EndpointClient = field(kw_only=True)
    serving_logs: ServingLogs = field(kw_only=True)
    # PSC endpoints of private deployments (Compute Engine)
    private_network: PrivateNetwork = field(kw_only=True)
