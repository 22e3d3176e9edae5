"""The emulator's resources (operations, endpoints, models) in memory, rendered as REST JSON.

One lock guards the whole registry; every method takes it, so routes and background deploys
can call in from any thread. JSON is camelCase, as the REST transport sends and expects.

Private Service Connect (PSC) endpoints (privateServiceConnectConfig.enablePrivateServiceConnect)
get a service attachment when their first model is deployed, named as Vertex AI names them
(`projects/{tenant project}-tp/regions/{region}/serviceAttachments/gkedpm-{30 hex}`, the user's
document and https://cloud.google.com/vertex-ai/docs/predictions/private-service-connect), stable
for that deployed model, and reported as `deployedModels[].privateEndpoints.serviceAttachment`
and `privateServiceConnectConfig.serviceAttachment` (both output fields of v1beta1:
PrivateEndpoints.service_attachment, PrivateServiceConnectConfig.service_attachment). The
attachment lives while the endpoint has a deployed model ("When an endpoint has an active
deployed model, the service attachment doesn't change"; with none, "Vertex AI might delete the
service attachment and recreate it": here it goes at once), so a later deploy gets a new one and
forwarding rules to the old one read CLOSED (`compute`). A PSC endpoint reports no
dedicatedEndpointDns, as the documented GET of a PSC endpoint shows none (what the real API does
when a deploy asks for both is not documented); its query routes answer only through a PSC
endpoint (`query_access`).
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldrop.domain.deployment import endpoint_name
from modeldrop.local.vertex.checks import DeploySpec, MachineSpec, ScaleToZero
from modeldrop.local.vertex.errors import (
    RpcError,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
)

TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1beta1."


def now() -> str:
    """RFC 3339 UTC timestamp with microseconds, as Google APIs write them."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def numeric_id() -> str:
    """A 19-digit id like the ones Vertex AI generates."""
    return str(10**18 + secrets.randbelow(8 * 10**18))


@dataclass
class Operation:
    name: str
    metadata: dict[str, Any]
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A copy: later updates never touch JSON already handed out."""
        body: dict[str, Any] = {"name": self.name, "metadata": self.metadata, "done": self.done}
        if self.error is not None:
            body["error"] = self.error
        elif self.response is not None:
            body["response"] = self.response
        return copy.deepcopy(body)


@dataclass
class DeployedModel:
    id: str
    model: str
    display_name: str
    machine: MachineSpec
    min_replicas: int
    max_replicas: int
    spot: bool
    create_time: str
    psc: bool = False
    scale_to_zero: ScaleToZero | None = None
    available_replicas: int = 1  # status.availableReplicaCount: 0 while scaled to zero
    status_message: str = ""
    status_time: str = ""

    def to_json(self, service_attachment: str = "") -> dict[str, Any]:
        """REST JSON; zero counts are left out, as proto3 JSON leaves out default values."""
        resources: dict[str, Any] = {
            "machineSpec": self.machine.to_json(),
            "minReplicaCount": self.min_replicas,
            "maxReplicaCount": self.max_replicas,
        }
        if self.spot:
            resources["spot"] = True
        if self.scale_to_zero is not None:
            resources |= self.scale_to_zero.to_json()
        status: dict[str, Any] = {
            "message": self.status_message,
            "lastUpdateTime": self.status_time or self.create_time,
            "availableReplicaCount": self.available_replicas,
        }
        resources, status = _without_defaults(resources), _without_defaults(status)
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "displayName": self.display_name,
            "createTime": self.create_time,
            "dedicatedResources": resources,
            "enableContainerLogging": True,
            "modelVersionId": "1",
            "status": status,
        }
        if self.psc and service_attachment:
            body["privateEndpoints"] = {"serviceAttachment": service_attachment}
        return body


def _without_defaults(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value not in (0, "")}


def service_attachment_name(endpoint: str, deployed_model_id: str) -> str:
    """The service attachment Vertex AI would publish for a PSC endpoint's deployed model: in a
    tenant project of the endpoint's project (`q...p-tp`), in the endpoint's region, named
    `gkedpm-` and 30 hex digits (as in the documented examples), derived from the ids."""
    parts = endpoint.split("/")
    project, region = parts[1], parts[3]
    tenant = "q" + hashlib.sha256(project.encode()).hexdigest()[:16] + "p-tp"
    digest = hashlib.sha256(f"{endpoint}/{deployed_model_id}".encode()).hexdigest()[:30]
    return f"projects/{tenant}/regions/{region}/serviceAttachments/gkedpm-{digest}"


@dataclass(frozen=True)
class Attachment:
    """A live service attachment: its name, the endpoint it publishes and who may connect."""

    name: str  # projects/P/regions/R/serviceAttachments/S
    endpoint: str  # projects/P/locations/L/endpoints/E
    project_allowlist: tuple[str, ...]


@dataclass
class Endpoint:
    name: str
    display_name: str
    dedicated: bool
    psc: dict[str, Any] | None
    create_time: str
    update_time: str
    labels: dict[str, str] = field(default_factory=dict)
    description: str = ""
    deployed_models: list[DeployedModel] = field(default_factory=list)
    deploys_in_progress: set[str] = field(default_factory=set)  # operation names
    service_attachment: str = ""  # a PSC endpoint's, while it has a deployed model

    @property
    def private(self) -> bool:
        """A Private Service Connect endpoint: queried only through a PSC endpoint."""
        return bool(self.psc and self.psc.get("enablePrivateServiceConnect"))

    def to_json(self, dns: str) -> dict[str, Any]:
        attachment = self.service_attachment
        body: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "deployedModels": [model.to_json(attachment) for model in self.deployed_models],
            "trafficSplit": {model.id: 100 for model in self.deployed_models[:1]},
            "etag": self.etag,
            "labels": dict(self.labels),
            "createTime": self.create_time,
            "updateTime": self.update_time,
        }
        if self.description:
            body["description"] = self.description
        if self.dedicated and not self.private:
            body["dedicatedEndpointEnabled"] = True
            body["dedicatedEndpointDns"] = dns
        if self.psc is not None:
            body["privateServiceConnectConfig"] = copy.deepcopy(self.psc)
            if attachment:
                body["privateServiceConnectConfig"]["serviceAttachment"] = attachment
        return body

    @property
    def etag(self) -> str:
        return hashlib.sha256(f"{self.name}@{self.update_time}".encode()).hexdigest()[:32]


@dataclass
class Model:
    name: str
    display_name: str
    gcs_uri: str
    create_time: str
    deployed_to: dict[str, str] = field(default_factory=dict)  # deployed model id -> endpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "artifactUri": self.gcs_uri,
            "versionId": "1",
            "versionAliases": ["default"],
            "createTime": self.create_time,
            "updateTime": self.create_time,
            "deployedModels": [
                {"endpoint": endpoint, "deployedModelId": deployed_id}
                for deployed_id, endpoint in self.deployed_to.items()
            ],
        }


@dataclass(frozen=True)
class DeployStart:
    """What a newly accepted deploy created."""

    operation: Operation
    endpoint: str
    model: str
    model_id: str  # the model id clients put in "model" when querying


class Registry:
    """Operations, endpoints and models; all methods are thread-safe."""

    def __init__(self, dns: str) -> None:
        self.dns = dns  # what endpoints report as dedicatedEndpointDns
        self._lock = threading.RLock()
        self._operations: dict[str, Operation] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._models: dict[str, Model] = {}
        self._attachments: dict[str, str] = {}  # live service attachment -> endpoint
        # called (outside the lock) with the name of each service attachment that goes away
        self.attachment_closed: Callable[[str], None] | None = None

    # operations
    def operation(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._operations:
                raise not_found(f"Operation {name} not found.")
            return self._operations[name].to_json()

    def operations(
        self, parent: str, page_size: str = "", page_token: str = "", query: str = ""
    ) -> dict[str, Any]:
        """ListOperations of a location (its REST query parameters as given): a page of its
        operations, oldest first, and the nextPageToken of the next one (none after the last).
        A pageSize of 0 or none means 100; a filter is refused (the emulator has none)."""
        if query:
            raise invalid(f"The emulator lists operations without a filter, not {query!r}.")
        for name, value in (("pageSize", page_size), ("pageToken", page_token)):
            if value and not value.isdecimal():
                raise invalid(f"Invalid {name} {value!r}.")
        start, size = int(page_token or 0), int(page_size or 0) or 100
        with self._lock:
            listed = [
                o for n, o in self._operations.items() if n.startswith(f"{parent}/operations/")
            ]
            page = [o.to_json() for o in listed[start : start + size]]
        if start + size < len(listed):
            return {"operations": page, "nextPageToken": str(start + size)}
        return {"operations": page}

    def new_operation(self, parent: str, kind: str, extra: dict[str, Any]) -> Operation:
        with self._lock:
            stamp = now()
            operation = Operation(
                name=f"{parent}/operations/{numeric_id()}",
                metadata={
                    "@type": TYPE_PREFIX + kind,
                    "genericMetadata": {"createTime": stamp, "updateTime": stamp},
                    **extra,
                },
            )
            self._operations[operation.name] = operation
            return operation

    def finish(
        self,
        name: str,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            operation = self._operations[name]
            operation.done = True
            operation.response, operation.error = response, error
            operation.metadata["genericMetadata"]["updateTime"] = now()

    # deploy
    def start_deploy(self, spec: DeploySpec) -> DeployStart:
        """Create the endpoint and model ids and the Deploy operation; 409 if an id is taken."""
        with self._lock:
            endpoint = endpoint_name(
                spec.project, spec.location, spec.endpoint_user_id or numeric_id()
            )
            model_id = spec.model_user_id or f"mg-custom-{numeric_id()[:10]}"
            model_name = f"{spec.parent}/models/{model_id}"
            if endpoint in self._endpoints:
                raise already_exists(
                    f"Endpoint {endpoint} already exists (endpoint_user_id "
                    f"{spec.endpoint_user_id!r}). Use another endpoint_user_id, or undeploy and "
                    "delete the existing endpoint first."
                )
            if model_name in self._models:
                raise already_exists(
                    f"Model {model_name} already exists (model_user_id {spec.model_user_id!r}). "
                    "Use another model_user_id or delete the model first."
                )
            stamp = now()
            operation = self.new_operation(
                spec.parent,
                "DeployOperationMetadata",
                {"destination": spec.parent, "modelId": model_id}
                | ({"projectNumber": spec.project} if spec.project.isdigit() else {}),
            )
            self._endpoints[endpoint] = Endpoint(
                name=endpoint,
                display_name=spec.endpoint_display_name,
                dedicated=spec.dedicated_endpoint,
                psc=spec.psc,
                create_time=stamp,
                update_time=stamp,
                deploys_in_progress={operation.name},
            )
            self._models[model_name] = Model(
                model_name, spec.model_display_name, spec.gcs_uri, stamp
            )
            return DeployStart(operation, endpoint, model_name, model_id)

    def finish_deploy(self, start: DeployStart, spec: DeploySpec) -> str:
        """Add the deployed model to its endpoint and complete the operation; its id."""
        with self._lock:
            endpoint = self._endpoints[start.endpoint]
            stamp = now()
            deployed = DeployedModel(
                id=numeric_id(),
                model=start.model,
                display_name=spec.model_display_name,
                machine=spec.machine,
                min_replicas=spec.min_replicas,
                max_replicas=spec.max_replicas,
                spot=spec.spot,
                create_time=stamp,
                psc=bool(spec.psc and spec.psc.get("enablePrivateServiceConnect")),
                scale_to_zero=spec.scale_to_zero,
                available_replicas=spec.scale_to_zero.replicas if spec.scale_to_zero else 1,
            )
            endpoint.deployed_models.append(deployed)
            if endpoint.private and not endpoint.service_attachment:
                endpoint.service_attachment = service_attachment_name(endpoint.name, deployed.id)
                self._attachments[endpoint.service_attachment] = endpoint.name
            endpoint.deploys_in_progress.discard(start.operation.name)
            endpoint.update_time = stamp
            self._models[start.model].deployed_to[deployed.id] = start.endpoint
            self.finish(
                start.operation.name,
                response={
                    "@type": TYPE_PREFIX + "DeployResponse",
                    "endpoint": start.endpoint,
                    "model": start.model,
                },
            )
            return deployed.id

    def fail_deploy(self, start: DeployStart, error: RpcError) -> None:
        """Complete the operation with `error`; the endpoint stays, without the model."""
        with self._lock:
            endpoint = self._endpoints.get(start.endpoint)
            if endpoint is not None:
                endpoint.deploys_in_progress.discard(start.operation.name)
            self.finish(start.operation.name, error=error.to_rpc_status())

    # endpoints
    def endpoint(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._get_endpoint(name).to_json(self.dns)

    def endpoints(self, parent: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e.to_json(self.dns)
                for n, e in self._endpoints.items()
                if n.startswith(parent + "/")
            ]

    def deployed(self, name: str) -> tuple[str, str, str, str]:
        """(deployed model id, model name, model display name, model id) serving `name`."""
        with self._lock:
            endpoint = self._get_endpoint(name)
            if not endpoint.deployed_models:
                state = "a deploy is in progress" if endpoint.deploys_in_progress else "none"
                raise failed_precondition(
                    f"Endpoint {name} has no deployed model ({state}); wait until the deploy "
                    "operation is done, or check its error."
                )
            deployed = endpoint.deployed_models[0]
            model_id = deployed.model.rsplit("/", 1)[-1]
            return deployed.id, deployed.model, deployed.display_name, model_id

    def update_endpoint(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply already-checked changes (labels, displayName, description)."""
        with self._lock:
            endpoint = self._get_endpoint(name)
            if "labels" in changes:
                endpoint.labels = dict(changes["labels"])
            if "displayName" in changes:
                endpoint.display_name = changes["displayName"]
            if "description" in changes:
                endpoint.description = changes["description"]
            endpoint.update_time = now()
            return endpoint.to_json(self.dns)

    def set_replicas(self, name: str, deployed_id: str, replicas: int, message: str = "") -> None:
        """A deployed model's status after it scaled: available replicas and a message (e.g. why
        it could not scale up); nothing when it is gone."""
        with self._lock:
            endpoint = self._endpoints.get(name)
            for deployed in endpoint.deployed_models if endpoint else []:
                if deployed.id == deployed_id:
                    deployed.available_replicas = replicas
                    deployed.status_message = message
                    deployed.status_time = now()

    def remove_deployed_model(self, name: str, deployed_id: str) -> None:
        """Take a deployed model off its endpoint; 404 if it is not there. The endpoint's
        service attachment goes with its last deployed model."""
        closed = ""
        with self._lock:
            endpoint = self._get_endpoint(name)
            for deployed in endpoint.deployed_models:
                if deployed.id == deployed_id:
                    endpoint.deployed_models.remove(deployed)
                    endpoint.update_time = now()
                    model = self._models.get(deployed.model)
                    if model is not None:
                        model.deployed_to.pop(deployed_id, None)
                    if not endpoint.deployed_models and endpoint.service_attachment:
                        closed = endpoint.service_attachment
                        self._attachments.pop(closed, None)
                        endpoint.service_attachment = ""
                    break
            else:
                ids = [d.id for d in endpoint.deployed_models] or "none"
                raise not_found(
                    f"Deployed model {deployed_id!r} not found on endpoint {name} "
                    f"(deployed: {ids})."
                )
        if closed and self.attachment_closed is not None:
            self.attachment_closed(closed)

    # Private Service Connect
    def attachment(self, name: str) -> Attachment | None:
        """The live service attachment `name` (projects/P/regions/R/serviceAttachments/S), or
        None (never published, or gone with its endpoint's last deployed model)."""
        with self._lock:
            endpoint = self._endpoints.get(self._attachments.get(name, ""))
            if endpoint is None:
                return None
            allowlist = (endpoint.psc or {}).get("projectAllowlist", [])
            return Attachment(name, endpoint.name, tuple(allowlist))

    def query_access(self, name: str, via_attachment: str | None) -> None:
        """Refuse a query to endpoint `name` that arrives the wrong way: a PSC endpoint's only
        through a PSC endpoint of its own service attachment (`via_attachment`, None for the
        public routes), any other endpoint's only through the public routes. 404 for an unknown
        endpoint.

        What Vertex AI answers in these cases is not documented; the errors below are guesses
        (403 PERMISSION_DENIED from the public routes, 404 NOT_FOUND through another
        attachment's PSC endpoint), worded to say what to do."""
        with self._lock:
            endpoint = self._get_endpoint(name)
            private, attachment = endpoint.private, endpoint.service_attachment
        if private and via_attachment is None:
            through = f" (service attachment {attachment})" if attachment else ""
            raise RpcError(
                f"Endpoint {name} is a private endpoint (Private Service Connect): it answers "
                "prediction requests only through a Private Service Connect endpoint, a "
                f"forwarding rule to its service attachment{through} in a project of its "
                "projectAllowlist, at https://INTERNAL_IP or "
                "https://ENDPOINT_ID-REGION-PROJECT_NUMBER.prediction.p.vertexai.goog.",
                code="PERMISSION_DENIED",
                http_status=403,
            )
        if via_attachment is not None and (not private or via_attachment != attachment):
            raise not_found(
                f"Endpoint {name} is not served by this Private Service Connect endpoint "
                f"(service attachment {via_attachment})."
            )

    def delete_endpoint(self, name: str) -> None:
        """Delete an endpoint; 400 FAILED_PRECONDITION while models are deployed or deploying."""
        with self._lock:
            endpoint = self._get_endpoint(name)
            if endpoint.deployed_models:
                ids = ", ".join(d.id for d in endpoint.deployed_models)
                raise failed_precondition(
                    f"Endpoint {name} has deployed models ({ids}); undeploy them before "
                    "deleting the endpoint."
                )
            if endpoint.deploys_in_progress:
                raise failed_precondition(
                    f"Endpoint {name} has a deploy in progress "
                    f"({', '.join(sorted(endpoint.deploys_in_progress))}); wait for it to finish."
                )
            del self._endpoints[name]

    def _get_endpoint(self, name: str) -> Endpoint:
        if name not in self._endpoints:
            raise not_found(f"Endpoint {name} not found.")
        return self._endpoints[name]

    # models
    def model(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._models:
                raise not_found(f"Model {name} not found.")
            return self._models[name].to_json()

    def delete_model(self, name: str) -> None:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise not_found(f"Model {name} not found.")
            if model.deployed_to:
                raise failed_precondition(
                    f"Model {name} is deployed to {sorted(set(model.deployed_to.values()))}; "
                    "undeploy it first."
                )
            del self._models[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "endpoints": [e.to_json(self.dns) for e in self._endpoints.values()],
                "models": [m.to_json() for m in self._models.values()],
                "operations": [o.to_json() for o in self._operations.values()],
            }
