"""The deployment record and its state machine (pure: no I/O, times are passed in)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from modeldrop.errors import ModeldropError

HISTORY_LIMIT = 50


class State(StrEnum):
    DETECTED = "DETECTED"
    VALIDATING = "VALIDATING"
    REJECTED = "REJECTED"
    VALIDATED = "VALIDATED"
    DEPLOYING = "DEPLOYING"
    DEPLOYED = "DEPLOYED"
    FAILED = "FAILED"
    UNDEPLOYING = "UNDEPLOYING"
    UNDEPLOYED = "UNDEPLOYED"
    SUPERSEDED = "SUPERSEDED"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.DETECTED: frozenset({State.VALIDATING, State.SUPERSEDED}),
    State.VALIDATING: frozenset({State.VALIDATED, State.REJECTED, State.FAILED, State.SUPERSEDED}),
    State.VALIDATED: frozenset({State.DEPLOYING, State.SUPERSEDED}),
    State.DEPLOYING: frozenset({State.DEPLOYED, State.FAILED}),
    State.DEPLOYED: frozenset({State.UNDEPLOYING}),
    State.FAILED: frozenset({State.UNDEPLOYING}),
    State.UNDEPLOYING: frozenset({State.UNDEPLOYED}),
    State.REJECTED: frozenset(),
    State.UNDEPLOYED: frozenset({State.VALIDATED}),  # redeploy (service.revisions)
    State.SUPERSEDED: frozenset(),
}
TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class InvalidTransition(ModeldropError):
    code = "INVALID_TRANSITION"


class ActionRefused(ModeldropError):
    """An action the deployment's state does not allow yet (say, DELETE while DEPLOYING)."""

    code = "ACTION_REFUSED"


@dataclass(frozen=True)
class Transition:
    """One move of a record to `state`; `event` is the sequence number of its notification
    (the CloudEvent id is `<deployment id>-<event>`; None on records older than the field)."""

    state: State
    at: datetime
    note: str = ""
    event: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": str(self.state), "at": self.at, "note": self.note, "event": self.event}


@dataclass(frozen=True)
class Deployment:
    """One upload of one model folder, from detection to its endpoint's deletion.

    `event_sequence` counts transitions (each one is one notification); `published_sequence` is
    the last one confirmed as published, so a lost notification is sent again by reconcile.
    `claims` counts the claims of the current step's work (validating, starting one placement
    attempt); a transition resets it. While a retryable failure is being retried, `error` is its
    last one.

    Placement (while DEPLOYING): `candidates` is the ladder to try, planned once (None before);
    `placement` the attempt under way, and then the one that landed ({attempt, region,
    machine_spec, spot, hourly_usd}); `attempts` the attempts that ended, oldest first;
    `preflight` what RecommendSpec said before the first attempt. Each attempt deploys its own
    endpoint and model ids (`attempt_id`). `smoke_test` is the one request sent to the endpoint
    before it is DEPLOYED (service.smoke), and its outcome. `blocked` says why a VALIDATED record
    waits for the budget cap (service.budget); None otherwise. `budget_hold` is the hourly
    estimate (dollars, an exact fraction such as "8129/10000") a VALIDATED record holds
    against the cap while it is being admitted, counted by other admissions until its lease
    lapses; any transition ends it.

    Revisions (service.revisions): `promotion_pending` is set by the DEPLOYED transition until
    the model name's pointer has weighed the revision; `last_used_at` is when the api last
    proxied a request to it (throttled); `deploy_round` counts its deploys (a redeploy of an
    UNDEPLOYED record starts the next round, with fresh Vertex AI ids). `private_endpoint` is a
    private deployment's PSC endpoint once connected (ports.PrivateConnection), which the smoke
    test and the proxy query.
    `etag` is opaque and belongs to the store: it identifies the stored version this value was
    read from, so an update can require that nobody changed the record in between.
    """

    id: str
    model: str
    bucket: str
    folder: str
    fingerprint: str
    revision: int
    state: State
    created_at: datetime
    updated_at: datetime
    history: tuple[Transition, ...] = ()
    validation: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    operation: str | None = None
    endpoint: str | None = None
    endpoint_dns: str | None = None
    deployed_model_id: str | None = None
    error: dict[str, Any] | None = None
    lease_expires_at: datetime | None = None
    claims: int = 0
    candidates: tuple[dict[str, Any], ...] | None = None
    preflight: dict[str, Any] | None = None
    placement: dict[str, Any] | None = None
    attempts: tuple[dict[str, Any], ...] = ()
    smoke_test: dict[str, Any] | None = None
    blocked: dict[str, Any] | None = None
    budget_hold: str | None = None
    promotion_pending: bool = False
    last_used_at: datetime | None = None
    deploy_round: int = 1
    private_endpoint: dict[str, Any] | None = None
    event_sequence: int = 0
    published_sequence: int = 0
    etag: str | None = None

    @property
    def event_pending(self) -> bool:
        """A transition whose notification has not been confirmed as published yet."""
        return self.published_sequence < self.event_sequence

    def lease_expired(self, now: datetime) -> bool:
        """Whether no worker holds a claim on the record (any more)."""
        return self.lease_expires_at is None or self.lease_expires_at <= now

    @staticmethod
    def lease_end(now: datetime, seconds: float) -> datetime:
        """When a claim taken at `now` for `seconds` expires (its `lease_expires_at`)."""
        return now + timedelta(seconds=seconds)

    @property
    def gcs_uri(self) -> str:
        return f"gs://{self.bucket}/{self.folder}"

    def attempt_id(self, attempt: int) -> str:
        """The id asked of Vertex AI for the endpoint and the model of placement attempt
        `attempt` (`endpoint_user_id`, `model_user_id`): derived from the record's id and the
        attempt number (and the deploy round after a redeploy), so a retried attempt collides
        with itself and never with another."""
        round_part = f"-r{self.deploy_round}" if self.deploy_round > 1 else ""
        return user_id("md-", self.id, f"{round_part}-{attempt}")

    @property
    def attempt(self) -> int:
        """The number of the current placement attempt (or of the last one, between two)."""
        if self.placement:
            return int(self.placement["attempt"])
        return int(self.attempts[-1]["attempt"]) if self.attempts else 1

    @property
    def vertex_id(self) -> str:
        """The Vertex AI endpoint and model id of the current (or last) attempt."""
        return self.attempt_id(self.attempt)

    @property
    def region(self) -> str | None:
        """The region of the current (or last) placement attempt; None before the first."""
        latest = self.placement or (self.attempts[-1] if self.attempts else None)
        return str(latest["region"]) if latest else None

    def attempt_endpoint(self, project: str, default_region: str) -> str:
        """The endpoint the current (or last) attempt creates, in its region (`default_region`
        before the first attempt)."""
        return endpoint_name(project, self.region or default_region, self.vertex_id)

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-friendly apart from datetimes (the store and API format those)."""
        return {
            "id": self.id,
            "model": self.model,
            "bucket": self.bucket,
            "folder": self.folder,
            "gcs_uri": self.gcs_uri,
            "fingerprint": self.fingerprint,
            "revision": self.revision,
            "state": str(self.state),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "history": [t.as_dict() for t in self.history],
            "validation": self.validation,
            "machine": self.machine,
            "overrides": self.overrides,
            "operation": self.operation,
            "endpoint": self.endpoint,
            "endpoint_dns": self.endpoint_dns,
            "deployed_model_id": self.deployed_model_id,
            "error": self.error,
            "lease_expires_at": self.lease_expires_at,
            "claims": self.claims,
            "candidates": list(self.candidates) if self.candidates is not None else None,
            "preflight": self.preflight,
            "placement": self.placement,
            "attempts": list(self.attempts),
            "smoke_test": self.smoke_test,
            "blocked": self.blocked,
            "budget_hold": self.budget_hold,
            "promotion_pending": self.promotion_pending,
            "last_used_at": self.last_used_at,
            "deploy_round": self.deploy_round,
            "private_endpoint": self.private_endpoint,
            "event_sequence": self.event_sequence,
            "published_sequence": self.published_sequence,
        }


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def snapshot(deployment: Deployment) -> dict[str, Any]:
    """The record as plain JSON (times in ISO 8601): event data and API status bodies."""
    return _json_safe(deployment.as_dict())


def slug(text: str, limit: int = 40) -> str:
    """Lowercase letters, digits and single dashes; never empty."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return cleaned or "model"


def location_name(project: str, region: str) -> str:
    """The Vertex AI resource name of a project's region (a deploy's destination)."""
    return f"projects/{project}/locations/{region}"


def endpoint_name(project: str, region: str, endpoint_id: str) -> str:
    """The Vertex AI resource name of an endpoint."""
    return f"{location_name(project, region)}/endpoints/{endpoint_id}"


def user_id(prefix: str, deployment_id: str, suffix: str = "") -> str:
    """A Vertex resource id: starts with a letter, [a-z0-9-], at most 63 characters, ending in
    `suffix` whole."""
    return (prefix + deployment_id)[: 63 - len(suffix)].rstrip("-") + suffix


ID_SHAPE = re.compile(r"[a-z0-9-]{1,40}-[0-9a-f]{12}")


def shaped_like_id(text: str) -> bool:
    """Whether `text` has the shape every `deployment_id` has (a slug, '-', 12 hex digits)."""
    return ID_SHAPE.fullmatch(text) is not None


def deployment_id(bucket: str, folder: str, fingerprint: str) -> str:
    """Deterministic id: duplicates of the same upload collapse onto one record."""
    digest = hashlib.sha256(f"gs://{bucket}/{folder}\n{fingerprint}".encode()).hexdigest()
    return f"{slug(folder.rstrip('/').rsplit('/', 1)[-1])}-{digest[:12]}"


def new_deployment(
    bucket: str, folder: str, fingerprint: str, revision: int, at: datetime
) -> Deployment:
    """A freshly detected upload of `folder` (a prefix such as "models/llama-ft")."""
    folder = folder.rstrip("/")
    return Deployment(
        id=deployment_id(bucket, folder, fingerprint),
        model=folder.rsplit("/", 1)[-1],
        bucket=bucket,
        folder=folder,
        fingerprint=fingerprint,
        revision=revision,
        state=State.DETECTED,
        created_at=at,
        updated_at=at,
        history=(Transition(State.DETECTED, at, "upload complete", event=1),),
        event_sequence=1,  # being detected is the first notification
    )


def advance(
    deployment: Deployment, to: State, at: datetime, note: str = "", **changes: Any
) -> Deployment:
    """The record after moving to state `to` (its claims start again at 0 and its budget hold
    ends, unless `changes` say otherwise); raises InvalidTransition when not allowed."""
    if to not in TRANSITIONS[deployment.state]:
        allowed = ", ".join(sorted(TRANSITIONS[deployment.state])) or "none (terminal)"
        raise InvalidTransition(
            f"Deployment {deployment.id} is {deployment.state}; it cannot become {to}.",
            f"Allowed next states: {allowed}.",
        )
    event = deployment.event_sequence + 1
    history = (*deployment.history, Transition(to, at, note, event))[-HISTORY_LIMIT:]
    return replace(
        deployment,
        state=to,
        updated_at=at,
        history=history,
        event_sequence=event,
        **{"claims": 0, "budget_hold": None, **changes},
    )


def update(deployment: Deployment, at: datetime, **changes: Any) -> Deployment:
    """The record with fields changed but its state kept (e.g. the operation name recorded)."""
    return replace(deployment, updated_at=at, **changes)
