"""What every handler is given: settings, adapters behind ports, a clock."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldrop.domain.findings import excerpt
from modeldrop.service.ports import (
    Deployer,
    DeploymentStore,
    EndpointClient,
    EventPublisher,
    WorkQueue,
)
from modeldrop.settings import Settings
from modeldrop.validation.folder import Folder


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
    settings: Settings
    store: DeploymentStore
    events: EventPublisher
    queue: WorkQueue
    deployer: Deployer
    open_folder: Callable[[str], Folder]
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = field(default=time.sleep)
    endpoints: EndpointClient | None = None  # queries to deployed models (the api only)
    memo: dict[str, Any] = field(default_factory=dict)  # per-instance caches (the api's)
