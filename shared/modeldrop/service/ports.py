"""Ports: what the handlers need from the outside world. Adapters implement them."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from modeldrop.domain.deployment import Deployment, State
from modeldrop.domain.revisions import ModelPointer
from modeldrop.errors import ModeldropError


class DeploymentStore(Protocol):
    """Deployment records with preconditions instead of transactions."""

    def create(self, deployment: Deployment) -> bool:
        """Store a new record; False (and nothing written) when the id already exists."""
        ...

    def get(self, deployment_id: str) -> Deployment | None:
        """The record with its etag set, or None."""
        ...

    def replace(self, deployment: Deployment) -> Deployment | None:
        """Write `deployment` only if the stored record still has `deployment.etag`.

        Returns the written record with its new etag, or None when someone else changed (or
        deleted) it first. Raises RecordTooLarge (and writes nothing) when the record is more
        than the store can hold.
        """
        ...

    def list_page(
        self,
        states: tuple[State, ...] = (),
        model: str | None = None,
        limit: int = 50,
        page_token: str | None = None,
    ) -> tuple[list[Deployment], str | None]:
        """Records newest first, filtered; returns a page and the token of the next one."""
        ...

    def latest_for_model(self, model: str) -> Deployment | None:
        """The newest revision of a model name."""
        ...

    def pending_notifications(self, limit: int = 100) -> builtins.list[Deployment]:
        """Records whose last transition has not been confirmed as published."""
        ...

    def get_pointer(self, model: str) -> ModelPointer | None:
        """The model name's serving pointer with its etag set, or None."""
        ...

    def put_pointer(self, pointer: ModelPointer) -> ModelPointer | None:
        """Create the pointer (etag None: only if the name has none yet) or replace it if the
        stored one still has `pointer.etag`. The written pointer with its new etag, or None when
        someone else got there first."""
        ...


class RecordTooLarge(ModeldropError):
    """The store cannot hold the record as it is (a Firestore document is at most 1 MiB)."""

    code = "RECORD_TOO_LARGE"


class EventPublisher(Protocol):
    """Notifications to subscribers: one CloudEvent per state transition."""

    def publish(self, deployment: Deployment) -> str:
        """Publish the event for the record's current state; returns the event id."""
        ...


class WorkQueue(Protocol):
    """Hands a validated deployment to the deploy function."""

    def publish_validated(self, deployment_id: str) -> None: ...


class DeployError(ModeldropError):
    """A Vertex AI call failed. `retryable` errors are worth trying again later; `capacity` says
    why a deploy cannot land here ("no_quota", "stockout", "unavailable": the machine or
    accelerator is not offered), so another candidate should be tried; None for other errors."""

    code = "VERTEX_ERROR"

    def __init__(
        self,
        message: str,
        hint: str = "",
        code: str | None = None,
        retryable: bool = False,
        capacity: str | None = None,
    ) -> None:
        super().__init__(message, hint, code)
        self.retryable = retryable
        self.capacity = capacity


@dataclass(frozen=True)
class DeployStarted:
    """What a deploy call left behind: the operation to poll, or (after a retry that found our
    own endpoint already there) the endpoint to watch."""

    operation: str | None
    endpoint: str | None = None


@dataclass(frozen=True)
class OperationStatus:
    """A deploy operation: still running, done with its endpoint, or failed with `error`
    ({code, message, hint}); `capacity` as DeployError's when it failed for capacity."""

    done: bool
    endpoint: str | None = None
    model: str | None = None
    error: dict[str, str] | None = None
    capacity: str | None = None


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint as Vertex AI describes it; `service_attachment` is set for a private (PSC)
    endpoint once its model is deployed (deployedModels[].privateEndpoints.serviceAttachment)."""

    name: str
    dedicated_endpoint_dns: str | None
    deployed_model_ids: list[str] = field(default_factory=list)
    display_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    service_attachment: str | None = None

    @property
    def ready(self) -> bool:
        return bool(self.deployed_model_ids)


@dataclass(frozen=True)
class Recommendation:
    """A machine RecommendSpec offers for a model folder in a region."""

    region: str
    machine_spec: dict[str, Any]  # {machine_type, accelerator_type, accelerator_count}
    has_quota: bool | None  # None: quota not checked (QUOTA_STATE_UNSPECIFIED)
    base_model: str = ""  # the base model Vertex AI infers for the folder ("" when none)


class Deployer(Protocol):
    """Vertex AI Model Garden: deploy custom weights, watch, undeploy."""

    def deploy(self, deployment: Deployment) -> DeployStarted: ...

    def operation_status(self, operation: str) -> OperationStatus: ...

    def find_deploy_operation(self, deployment: Deployment) -> str | None:
        """The name of the Deploy operation that creates the deployment's endpoint, or None
        when Vertex AI lists none (for a retry that found the endpoint but not its operation)."""
        ...

    def describe_endpoint(self, endpoint: str) -> EndpointInfo | None: ...

    def set_labels(self, endpoint: str, labels: dict[str, str]) -> None: ...

    def undeploy(self, endpoint: str) -> bool:
        """One step towards deleting the endpoint; True once it is gone (safe to repeat)."""
        ...

    def recommend_spec(self, gcs_uri: str, region: str) -> list[Recommendation]:
        """RecommendSpec in `region` (machine availability and user quota checked); raises
        DeployError when the call fails or is not offered there."""
        ...


@dataclass(frozen=True)
class PrivateConnection:
    """A private deployment's PSC endpoint in the operator's VPC: its internal `ip`, the
    forwarding rule and address (Compute Engine resource names), the service attachment it
    targets, its network, and the name its endpoint's certificate is checked against."""

    ip: str
    forwarding_rule: str
    address: str
    service_attachment: str
    network: str
    tls_name: str

    def as_dict(self) -> dict[str, str]:
        return {
            "ip": self.ip,
            "forwarding_rule": self.forwarding_rule,
            "address": self.address,
            "service_attachment": self.service_attachment,
            "network": self.network,
            "tls_name": self.tls_name,
        }


class PrivateNetwork(Protocol):
    """PSC endpoints for private deployments (Compute Engine addresses and forwarding rules),
    named after the deployment's attempt so that a retry finds its own."""

    def connect(
        self, deployment: Deployment, endpoint: str, service_attachment: str
    ) -> PrivateConnection | None:
        """One step of connecting the deployment's `endpoint`: reserve its address, create its
        forwarding rule to `service_attachment`. The connection once the rule is ready; None
        while it is being made. Raises DeployError."""
        ...

    def disconnect(self, deployment: Deployment) -> bool:
        """One step of removing its forwarding rule, then its address; True once both are gone
        (safe to repeat, and True at once for a deployment that never had them)."""
        ...


@dataclass(frozen=True)
class LogEntry:
    """One line of a serving container's log."""

    at: str  # RFC 3339
    severity: str  # Cloud Logging's LogSeverity name: DEFAULT, INFO, WARNING, ERROR, ...
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"at": self.at, "severity": self.severity, "text": self.text}


class ServingLogs(Protocol):
    """The log of a deployment's model server (Cloud Logging on Google Cloud)."""

    def newest(self, deployment: Deployment, limit: int) -> list[LogEntry]:
        """The newest `limit` entries of the deployment's endpoint, newest first; [] before it
        has any. Raises ModeldropError (code LOGS_UNAVAILABLE) when the log cannot be read."""
        ...


class UpstreamError(ModeldropError):
    """The endpoint answered with an error: its HTTP status and body are kept."""

    code = "UPSTREAM_ERROR"

    def __init__(self, status: int, body: bytes, url: str) -> None:
        text = body[:2000].decode("utf-8", "replace")
        super().__init__(
            f"The model endpoint answered HTTP {status}: {text}",
            "Check the request body; see the endpoint's logs in Cloud Logging for details.",
        )
        self.status = status
        self.body = body
        self.url = url


class UpstreamTimeout(ModeldropError):
    """The endpoint did not answer in time (MODELDROP_UPSTREAM_TIMEOUT)."""

    code = "UPSTREAM_TIMEOUT"


class UpstreamUnreachable(ModeldropError):
    """The endpoint could not be reached (DNS, connection refused, TLS)."""

    code = "UPSTREAM_UNREACHABLE"


class EndpointClient(Protocol):
    """Queries to a deployed model's dedicated endpoint (of a DEPLOYED record). A failing query
    raises UpstreamError (the endpoint answered an error), UpstreamTimeout or
    UpstreamUnreachable."""

    def chat_completions(
        self, deployment: Deployment, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """`timeout`: the read timeout of this call (default MODELDROP_UPSTREAM_TIMEOUT)."""
        ...

    def stream_chat_completions(
        self, deployment: Deployment, body: dict[str, Any]
    ) -> Iterator[bytes]: ...

    def predict(
        self, deployment: Deployment, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]: ...

    def stream_raw_predict(
        self, deployment: Deployment, body: dict[str, Any]
    ) -> Iterator[bytes]: ...
