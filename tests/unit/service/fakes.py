"""In-memory fakes of the ports, for fast unit tests of the handlers' logic (no I/O)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.api.cache import DeployedCache, Throttle
from modeldrop.api.context import REFRESH_SECONDS, ApiContext
from modeldrop.domain.deployment import Deployment, snapshot
from modeldrop.domain.folder import FileInfo
from modeldrop.domain.private_endpoint import resource_names
from modeldrop.domain.revisions import ModelPointer
from modeldrop.errors import UsageError
from modeldrop.service.ports import (
    DeployError,
    DeployStarted,
    EndpointInfo,
    LogEntry,
    OperationStatus,
    PrivateConnection,
    Recommendation,
    RecordTooLarge,
)
from modeldrop.settings import Settings

BUCKET = "models-bucket"


class FakeStore:
    """Records in memory; like Firestore it refuses a record over `max_bytes` (as JSON here)."""

    def __init__(self, max_bytes: int = 2**20) -> None:
        self.rows: dict[str, tuple[Deployment, int]] = {}
        self.pointers: dict[str, tuple[ModelPointer, int]] = {}
        self.max_bytes = max_bytes

    def create(self, deployment: Deployment) -> bool:
        if deployment.id in self.rows:
            return False
        self.rows[deployment.id] = (replace(deployment, etag=None), 1)
        return True

    def get(self, deployment_id: str) -> Deployment | None:
        row = self.rows.get(deployment_id)
        return replace(row[0], etag=str(row[1])) if row else None

    def replace(self, deployment: Deployment) -> Deployment | None:
        if deployment.etag is None:  # as the real store: a record must be read before written
            raise ValueError(f"deployment {deployment.id} has no etag: read it with get() first")
        row = self.rows.get(deployment.id)
        if row is None or str(row[1]) != deployment.etag:
            return None
        size = len(json.dumps(snapshot(deployment)))
        if size > self.max_bytes:
            raise RecordTooLarge(f"The record is {size} bytes; at most {self.max_bytes} fit.")
        self.rows[deployment.id] = (replace(deployment, etag=None), row[1] + 1)
        return self.get(deployment.id)

    def list_page(self, states=(), model=None, limit=50, page_token=None):
        records = sorted(
            (self.get(i) for i in self.rows),
            key=lambda d: (d.created_at, d.id),
            reverse=True,
        )
        records = [
            d
            for d in records
            if (not states or d.state in states) and (not model or d.model == model)
        ]
        if page_token is not None and not page_token.isdecimal():  # as the real store: not ours
            raise UsageError("Invalid page_token.", "Pass the next_page_token unchanged.")
        start = int(page_token or 0)
        page = records[start : start + limit]
        more = start + limit < len(records)
        return page, str(start + limit) if more else None

    def pending_notifications(self, limit: int = 100) -> list[Deployment]:
        return [d for d in (self.get(i) for i in self.rows) if d.event_pending][:limit]

    def latest_for_model(self, model: str) -> Deployment | None:
        records = [self.get(i) for i in self.rows if self.rows[i][0].model == model]
        return max(records, key=lambda d: (d.revision, d.created_at), default=None)

    def get_pointer(self, model: str) -> ModelPointer | None:
        row = self.pointers.get(model)
        return replace(row[0], etag=str(row[1])) if row else None

    def put_pointer(self, pointer: ModelPointer) -> ModelPointer | None:
        row = self.pointers.get(pointer.name)
        if (row is None) != (pointer.etag is None) or (row and str(row[1]) != pointer.etag):
            return None
        self.pointers[pointer.name] = (replace(pointer, etag=None), row[1] + 1 if row else 1)
        return self.get_pointer(pointer.name)


class FakeEvents:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []  # (deployment id, state)
        self.failing = False

    def publish(self, deployment: Deployment) -> str:
        if self.failing:
            raise ConnectionError("pubsub is down")
        self.published.append((deployment.id, str(deployment.state)))
        return f"{deployment.id}-{deployment.event_sequence}"

    def states(self, deployment_id: str) -> list[str]:
        return [s for i, s in self.published if i == deployment_id]


class FakeQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.failing = False

    def publish_validated(self, deployment_id: str) -> None:
        if self.failing:
            raise ConnectionError("pubsub is down")
        self.messages.append(deployment_id)


@dataclass
class FakeDeployer:
    """Vertex AI in memory: operations complete when the test says so. Endpoints are named as
    Vertex AI names them (the attempt's region and id), in `project`."""

    project: str = "p"
    region: str = "us-central1"  # where a deployment without a placement would go
    deploy_calls: list[str] = field(default_factory=list)
    deployed_placements: list[dict] = field(default_factory=list)  # placement of each call
    endpoints: dict[str, EndpointInfo] = field(default_factory=dict)
    operations: dict[str, OperationStatus] = field(default_factory=dict)
    deploy_models: dict[str, str] = field(default_factory=dict)  # operation: its model id
    failures: list[DeployError] = field(default_factory=list)
    poll_failures: list[DeployError] = field(default_factory=list)  # raised by operation_status
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # RecommendSpec's answer per region; a region without one is not offered (DeployError)
    recommendations: dict[str, list[Recommendation]] = field(default_factory=dict)
    recommend_calls: list[tuple[str, str]] = field(default_factory=list)  # (gcs_uri, region)
    private: bool = False  # endpoints come up private (a service attachment, no public DNS)
    undeploy_failures: list[Exception] = field(default_factory=list)  # raised by undeploy

    def deploy(self, deployment: Deployment) -> DeployStarted:
        self.deploy_calls.append(deployment.id)
        self.deployed_placements.append(dict(deployment.placement or {}))
        if self.failures:
            raise self.failures.pop(0)
        name = deployment.attempt_endpoint(self.project, self.region)
        if name in self.endpoints:
            return DeployStarted(operation=None, endpoint=name)
        self.endpoints[name] = EndpointInfo(name, None)
        location = name.rsplit("/endpoints/", 1)[0]
        operation = f"{location}/operations/{len(self.operations) + 1}"
        self.operations[operation] = OperationStatus(done=False)
        self.deploy_models[operation] = deployment.vertex_id
        return DeployStarted(operation=operation)

    def finish(
        self, operation: str | None = None, error: dict | None = None, capacity: str | None = None
    ) -> None:
        """Complete one (default: every) pending operation, successfully unless `error` (failed
        for `capacity` when given: no_quota, stockout, unavailable)."""
        for name, status in self.operations.items():
            if status.done or (operation and name != operation):
                continue
            endpoint = next(e for e in self.endpoints if not self.endpoints[e].ready)
            if error:
                self.operations[name] = OperationStatus(done=True, error=error, capacity=capacity)
            else:
                attachment = f"projects/tp/regions/r/serviceAttachments/{endpoint.rsplit('/')[-1]}"
                self.endpoints[endpoint] = EndpointInfo(
                    endpoint,
                    None if self.private else "127.0.0.1:9",
                    ["42"],
                    service_attachment=attachment if self.private else None,
                )
                self.operations[name] = OperationStatus(done=True, endpoint=endpoint, model="m")

    def operation_status(self, operation: str) -> OperationStatus:
        if self.poll_failures:
            raise self.poll_failures.pop(0)
        return self.operations[operation]

    def find_deploy_operation(self, deployment: Deployment) -> str | None:
        """As Vertex AI's operation list read by the real one: the newest Deploy of its model."""
        found = [o for o, m in self.deploy_models.items() if m == deployment.vertex_id]
        return found[-1] if found else None

    def describe_endpoint(self, endpoint: str) -> EndpointInfo | None:
        return self.endpoints.get(endpoint)

    def set_labels(self, endpoint: str, labels: dict[str, str]) -> None:
        self.labels[endpoint] = labels

    def undeploy(self, endpoint: str) -> bool:
        if self.undeploy_failures:
            raise self.undeploy_failures.pop(0)
        self.endpoints.pop(endpoint, None)
        return True

    def recommend_spec(self, gcs_uri: str, region: str) -> list[Recommendation]:
        self.recommend_calls.append((gcs_uri, region))
        if region not in self.recommendations:
            raise DeployError(
                f"Vertex AI offers no RecommendSpec in {region}.",
                "The region or API version does not have the call; the catalog's machines apply.",
                code="VERTEX_NOT_FOUND",
            )
        return self.recommendations[region]


@dataclass
class FakePrivateNetwork:
    """PSC endpoints in memory: an address and a rule per deployment attempt (named as the real
    adapter names them); a rule is ready `ready_after` connect calls after it was made."""

    ready_after: int = 1
    rules: dict[str, dict] = field(default_factory=dict)  # rule name: {address, target, polls}
    addresses: dict[str, str] = field(default_factory=dict)  # address name: ip
    calls: list[tuple[str, str]] = field(default_factory=list)  # (connect|disconnect, rule)
    refusal: DeployError | None = None  # raised instead of making the rule (after the address)

    def connect(self, deployment: Deployment, endpoint: str, service_attachment: str):
        address, rule = resource_names(deployment)
        self.calls.append(("connect", rule))
        if address not in self.addresses:
            self.addresses[address] = f"10.0.0.{len(self.addresses) + 2}"
            return None
        if self.refusal:
            raise self.refusal
        entry = self.rules.setdefault(rule, {"address": address, "target": service_attachment})
        entry["polls"] = entry.get("polls", -1) + 1
        if entry["polls"] < self.ready_after:
            return None
        return PrivateConnection(
            self.addresses[address], rule, address, service_attachment, "vpc", "private.test"
        )

    def disconnect(self, deployment: Deployment) -> bool:
        address, rule = resource_names(deployment)
        self.calls.append(("disconnect", rule))
        if self.rules.pop(rule, None) is not None:
            return False  # the rule's deletion is an operation: the address goes next time
        self.addresses.pop(address, None)
        return True


class FakeEndpoints:
    """Dedicated endpoints in memory: canned answers, or a scripted failure."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []  # (kind, deployment id, body)
        self.failure: Exception | None = None
        self.stream_chunks = [b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n']

    def _record(self, kind: str, deployment: Deployment, body: dict) -> None:
        self.calls.append((kind, deployment.id, body))
        if self.failure:
            raise self.failure

    def chat_completions(self, deployment: Deployment, body: dict, timeout=None) -> dict:
        self._record("chat", deployment, body)
        return {"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]}

    def stream_chat_completions(self, deployment: Deployment, body: dict):
        self._record("stream", deployment, body)
        return iter(self.stream_chunks)

    def predict(self, deployment: Deployment, body: dict, timeout=None) -> dict:
        self._record("predict", deployment, body)
        return {"predictions": ["x" for _ in body["instances"]]}

    def stream_raw_predict(self, deployment: Deployment, body: dict):
        self._record("raw", deployment, body)
        return iter(self.stream_chunks)


class FakeServingLogs:
    """Serving logs in memory, per deployment id, newest first; or a scripted failure."""

    def __init__(self) -> None:
        self.entries: dict[str, list[LogEntry]] = {}
        self.failure: Exception | None = None

    def newest(self, deployment: Deployment, limit: int) -> list[LogEntry]:
        if self.failure:
            raise self.failure
        return self.entries.get(deployment.id, [])[:limit]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class LocalBucket:
    """A bucket as a directory: gs://BUCKET/PREFIX opens the real LocalFolder adapter on it.

    `failures` maps file names to what reading them raises (storage or a reader going wrong);
    `reads` counts the reads of each file name and `listings` the listings, over every folder
    opened.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.failures: dict[str, Exception] = {}
        self.reads: Counter[str] = Counter()
        self.listings = 0

    def open(self, uri: str) -> LocalFolder:
        return FailingFolder(self.root / uri.removeprefix("gs://"), self)

    def upload(
        self, bucket: str, prefix: str, source: Path, names: list[str] | None = None
    ) -> list[str]:
        target = self.root / bucket / prefix
        target.mkdir(parents=True, exist_ok=True)
        names = names or sorted(p.name for p in source.iterdir())
        for name in names:
            shutil.copy(source / name, target / name)
        return [f"{prefix}/{n}" for n in names]


class FailingFolder(LocalFolder):
    """A LocalFolder of a LocalBucket: reads of the files named in its `failures` raise, and
    listings and reads are counted on it."""

    def __init__(self, path: Path, bucket: LocalBucket) -> None:
        super().__init__(path)
        self.bucket = bucket

    def list_files(self) -> list[FileInfo]:
        self.bucket.listings += 1
        return super().list_files()

    def read_range(self, name: str, start: int, length: int) -> bytes:
        self.bucket.reads[name] += 1
        if name in self.bucket.failures:
            raise self.bucket.failures[name]
        return super().read_range(name, start, length)


@dataclass
class Harness:
    """A Context wired to fakes, with the fakes at hand for assertions."""

    ctx: ApiContext  # a service Context too: the handlers of every function take it
    store: FakeStore
    events: FakeEvents
    queue: FakeQueue
    deployer: FakeDeployer
    bucket: LocalBucket
    clock: Clock
    endpoints: FakeEndpoints
    logs: FakeServingLogs
    network: FakePrivateNetwork


def make_harness(tmp_path: Path, **settings: str) -> Harness:
    bucket = LocalBucket(tmp_path / "buckets")
    store, events, queue, deployer, clock = (
        FakeStore(),
        FakeEvents(),
        FakeQueue(),
        FakeDeployer(),
        Clock(),
    )
    env = {
        "MODELDROP_BUCKET": BUCKET,
        "MODELDROP_SETTLE_SECONDS": "0",
        "MODELDROP_BASE_POLICY": "strict",
        **settings,
    }
    endpoints, logs, network = FakeEndpoints(), FakeServingLogs(), FakePrivateNetwork()
    settings = Settings.from_env(env)
    deployer.project, deployer.region = settings.project, settings.region
    ctx = ApiContext(
        settings,
        store,
        events,
        queue,
        deployer,
        bucket.open,
        clock,
        sleep=clock.advance,
        endpoints=endpoints,
        serving_logs=logs,
        private_network=network,
        deployed=DeployedCache(settings.record_cache_seconds),
        refresh=Throttle(REFRESH_SECONDS),
    )
    return Harness(ctx, store, events, queue, deployer, bucket, clock, endpoints, logs, network)
