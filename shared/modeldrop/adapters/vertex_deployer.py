"""Vertex AI Model Garden: deploy custom weights (v1beta1), watch operations, undeploy.

The deploy goes through google-cloud-aiplatform's ModelGardenServiceClient, imported only when
something deploys; every other call is one plain REST request (VertexRest), so the api and
reconcile functions never pay the SDK's import cost.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import requests

from modeldrop.adapters.vertex_errors import classify, status_name
from modeldrop.adapters.vertex_rest import NotFoundError, VertexRest, api_host, region_of
from modeldrop.domain.deployment import Deployment, location_name
from modeldrop.domain.private_endpoint import private_target
from modeldrop.service.ports import (
    DeployError,
    DeployStarted,
    EndpointInfo,
    OperationStatus,
    Recommendation,
)
from modeldrop.settings import Settings

# "The name can be up to 128 characters long and can consist of any UTF-8 characters"
# (aiplatform_v1beta1 types/endpoint.py and types/model.py, display_name).
DISPLAY_NAME_CHARS = 128
# RecommendSpecResponse.Recommendation.QuotaState, by name and by number (REST JSON has either).
QUOTA_STATES: dict[str | int, bool | None] = {
    "QUOTA_STATE_UNSPECIFIED": None,
    "QUOTA_STATE_USER_HAS_QUOTA": True,
    "QUOTA_STATE_NO_USER_QUOTA": False,
    0: None,
    1: True,
    2: False,
}


def deploy_request(
    deployment: Deployment, project: str, psc_allowlist: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The DeployRequest of the deployment's current placement attempt, as a proto-plus mapping
    (snake_case field names): its region, machine spec and spot, and the attempt's own ids.

    The endpoint is private (Private Service Connect) when the folder's modeldrop.yaml asks for
    it, or when the operator set a project allowlist for every deployment; the operator's own
    project is always on the allowlist (its PSC endpoint connects from there).
    """
    placement = deployment.placement
    if not placement:
        raise ValueError(f"deployment {deployment.id} has no placement to deploy")
    overrides = deployment.overrides
    machine = placement["machine_spec"]
    endpoint_config: dict[str, Any] = {
        "endpoint_display_name": overrides.get(
            "endpoint_display_name", deployment.model[:DISPLAY_NAME_CHARS]
        ),
        "endpoint_user_id": deployment.vertex_id,
        "dedicated_endpoint_enabled": True,
    }
    private = private_target(overrides, project, psc_allowlist)
    if private:
        endpoint_config["private_service_connect_config"] = {
            "enable_private_service_connect": True,
            "project_allowlist": list(private.project_allowlist),
        }
    resources: dict[str, Any] = {
        "machine_spec": {
            "machine_type": machine["machine_type"],
            "accelerator_type": machine["accelerator_type"],
            "accelerator_count": machine["accelerator_count"],
        },
        **replica_counts(overrides),
    }
    if placement.get("spot"):
        resources["spot"] = True
    return {
        "destination": location_name(project, placement["region"]),
        "custom_model": {"gcs_uri": deployment.gcs_uri},
        "model_config": {
            "model_display_name": overrides.get(
                "model_display_name", deployment.model[:DISPLAY_NAME_CHARS]
            ),
            "model_user_id": deployment.vertex_id,
        },
        "endpoint_config": endpoint_config,
        "deploy_config": {"dedicated_resources": resources},
    }


def replica_counts(overrides: dict[str, Any]) -> dict[str, Any]:
    """min/max_replica_count from modeldrop.yaml's replicas, or Scale To Zero's.

    Scale To Zero (Preview, v1beta1): min_replica_count 0 turns it on, and
    scale_to_zero_spec.idle_scaledown_period (a Duration, 300 s to 28800 s) is how long the
    deployed model may go without traffic before it scales to zero; min_scaleup_period and
    initial_replica_count keep the API's defaults (1 hour, 1 replica). Fields from
    google-cloud-aiplatform 2.7, aiplatform_v1beta1/types/machine_resources.py
    (DedicatedResources.scale_to_zero_spec, ScaleToZeroSpec); semantics from
    https://cloud.google.com/vertex-ai/docs/predictions/autoscaling#scale-to-zero. Validation
    refuses replicas.min beside scale_to_zero, so only replicas.max applies (default 1).
    """
    replicas = overrides.get("replicas", {})
    scale_to_zero = overrides.get("scale_to_zero")
    if scale_to_zero:
        period = {"seconds": scale_to_zero["idle_scaledown_seconds"]}  # google.protobuf.Duration
        return {
            "min_replica_count": 0,
            "max_replica_count": replicas.get("max", 1),
            "scale_to_zero_spec": {"idle_scaledown_period": period},
        }
    minimum = replicas.get("min", 1)
    return {"min_replica_count": minimum, "max_replica_count": replicas.get("max", minimum)}


MAX_OPERATION_PAGES = 20  # of the location's operations read when looking for a lost one


class VertexDeployer:
    """The Deployer port on Vertex AI (or on the local Vertex emulator, same REST calls).

    Every call goes to the host of the region it concerns: the resource name's location, or the
    placement's region for a deploy (the API has one host per region)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hosts: dict[str, VertexRest] = {}
        self._gardens: dict[str, Any] = {}

    def _rest(self, region: str | None) -> VertexRest:
        """The REST client of `region` (None: the settings' region)."""
        region = region or self.settings.region
        if region not in self._hosts:
            self._hosts[region] = VertexRest(self.settings, region)
        return self._hosts[region]

    @cached_property
    def _sdk(self) -> Any:
        from google.cloud import aiplatform_v1beta1

        return aiplatform_v1beta1

    def _garden(self, region: str) -> Any:
        if region not in self._gardens:
            args: dict[str, Any] = {
                "transport": self.settings.vertex_transport,
                "client_options": {"api_endpoint": api_host(self.settings, region)},
            }
            if self.settings.vertex_anonymous:
                from google.auth.credentials import AnonymousCredentials

                args["credentials"] = AnonymousCredentials()
            self._gardens[region] = self._sdk.ModelGardenServiceClient(**args)
        return self._gardens[region]

    def deploy(self, deployment: Deployment) -> DeployStarted:
        """Start the current placement attempt. A retry that finds the attempt's endpoint id
        taken carries on with it."""
        from google.api_core import exceptions

        body = deploy_request(
            deployment, self.settings.project, self.settings.psc_project_allowlist
        )
        region = deployment.region or self.settings.region
        try:
            operation = self._garden(region).deploy(request=self._sdk.DeployRequest(body))
        except exceptions.GoogleAPICallError as exc:
            if status_name(exc) == "ALREADY_EXISTS":
                endpoint = deployment.attempt_endpoint(self.settings.project, region)
                return DeployStarted(operation=None, endpoint=endpoint)
            raise classify(exc, region) from exc
        return DeployStarted(operation=operation.operation.name)

    def operation_status(self, operation: str) -> OperationStatus:
        try:
            result = self._rest(region_of(operation)).call("GET", operation)
        except NotFoundError:
            error = {
                "code": "VERTEX_NOT_FOUND",
                "message": f"Vertex AI has no operation {operation}.",
                "hint": "The operation expired or was deleted; check the endpoint in the console.",
            }
            return OperationStatus(done=True, error=error)
        if not result.get("done"):
            return OperationStatus(done=False)
        failure: dict[str, Any] | None = result.get("error")  # a google.rpc.Status
        if failure and failure.get("code"):
            region = region_of(operation) or self.settings.region
            failed = classify_rpc_status(failure["code"], failure.get("message", ""), region)
            return OperationStatus(done=True, error=failed.as_dict(), capacity=failed.capacity)
        response = result.get("response", {})
        return OperationStatus(
            done=True, endpoint=response.get("endpoint"), model=response.get("model")
        )

    def find_deploy_operation(self, deployment: Deployment) -> str | None:
        """The newest Deploy operation of the deployment's endpoint in the location, or None.

        GET /v1beta1/{name=projects/*/locations/*}/operations: ListOperations as the v1beta1
        REST transport maps it (aiplatform_v1beta1 services/model_garden_service/transports/
        rest_base.py, _BaseListOperations). ListOperationsRequest has a `filter`, but Vertex AI
        documents no fields for it, so every page is read and matched here (deploy_of).
        """
        region = deployment.region or self.settings.region
        location = location_name(self.settings.project, region)
        found: list[dict[str, Any]] = []
        params: dict[str, str] = {}
        for _ in range(MAX_OPERATION_PAGES):  # bounded: a poll never reads a whole history
            try:
                page = self._rest(region).call("GET", f"{location}/operations", params=params)
            except NotFoundError:
                return None
            found += [o for o in page.get("operations", []) if deploy_of(o, deployment)]
            token = page.get("nextPageToken")
            if not token or token == params.get("pageToken"):
                break
            params = {"pageToken": str(token)}
        if not found:
            return None
        newest = max(
            found, key=lambda o: o["metadata"].get("genericMetadata", {}).get("createTime", "")
        )
        return str(newest["name"])

    def describe_endpoint(self, endpoint: str) -> EndpointInfo | None:
        try:
            found = self._rest(region_of(endpoint)).call("GET", endpoint)
        except NotFoundError:
            return None
        models = found.get("deployedModels", [])
        # a PSC endpoint's deployed model: privateEndpoints.serviceAttachment (v1beta1
        # types/endpoint.py PrivateEndpoints; the user's document shows it on the endpoint GET)
        attachments = [m.get("privateEndpoints", {}).get("serviceAttachment") for m in models]
        return EndpointInfo(
            name=found["name"],
            dedicated_endpoint_dns=found.get("dedicatedEndpointDns") or None,
            deployed_model_ids=[m["id"] for m in models],
            display_name=found.get("displayName", ""),
            labels=found.get("labels", {}),
            service_attachment=next((a for a in attachments if a), None),
        )

    def set_labels(self, endpoint: str, labels: dict[str, str]) -> None:
        self._rest(region_of(endpoint)).call(
            "PATCH", endpoint, {"labels": labels}, {"updateMask": "labels"}
        )

    def undeploy(self, endpoint: str) -> bool:
        """One step towards deleting the endpoint; True once it is gone.

        Undeploys every deployed model (without waiting), and deletes the endpoint once it has
        none. Call again until it returns True; repeated calls are safe.
        """
        info = self.describe_endpoint(endpoint)
        if info is None:
            return True
        rest = self._rest(region_of(endpoint))
        try:
            for model_id in info.deployed_model_ids:
                rest.call("POST", f"{endpoint}:undeployModel", {"deployedModelId": model_id})
            if not info.deployed_model_ids:
                rest.call("DELETE", endpoint)
        except NotFoundError:
            return True
        except DeployError as exc:
            if exc.code != "VERTEX_FAILED_PRECONDITION":  # an undeploy already under way
                raise
        return self.describe_endpoint(endpoint) is None

    def recommend_spec(self, gcs_uri: str, region: str) -> list[Recommendation]:
        """ModelService.RecommendSpec in `region`, machine availability and user quota checked.

        Raises DeployError when the call fails or the region does not offer it.
        """
        rest = self._rest(region)
        body = {"gcsUri": gcs_uri, "checkMachineAvailability": True, "checkUserQuota": True}
        try:
            found = rest.call(
                "POST", f"{location_name(self.settings.project, region)}:recommendSpec", body
            )
        except NotFoundError as exc:
            raise DeployError(
                f"Vertex AI offers no RecommendSpec in {region}.",
                "The region or API version does not have the call; the catalog's machines apply.",
                code="VERTEX_NOT_FOUND",
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise DeployError(
                f"RecommendSpec in {region} failed: {exc}",
                "Vertex AI could not be reached or answered no JSON; the catalog's machines apply.",
                code="VERTEX_UNREACHABLE",
                retryable=True,
            ) from exc
        return [
            Recommendation(
                region=r.get("region", region),
                machine_spec=machine_spec(r.get("spec", {}).get("machineSpec", {})),
                has_quota=QUOTA_STATES.get(r.get("userQuotaState", 0)),
                base_model=found.get("baseModel", ""),
            )
            for r in found.get("recommendations", [])
        ]


def deploy_of(operation: dict[str, Any], deployment: Deployment) -> bool:
    """Whether a listed operation (REST JSON) is a Deploy of the deployment: its
    DeployOperationMetadata.model_id is the model_user_id we set (types/model_garden_service.py;
    a failed one has nothing else to go by), or its DeployResponse names our endpoint id."""
    metadata = operation.get("metadata", {})
    if not metadata.get("@type", "").endswith(".DeployOperationMetadata"):
        return False
    endpoint = operation.get("response", {}).get("endpoint", "")
    return (
        metadata.get("modelId") == deployment.vertex_id
        or endpoint.rpartition("/")[2] == deployment.vertex_id
    )


def machine_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A REST MachineSpec as {machine_type, accelerator_type (its name), accelerator_count}."""
    accelerator = spec.get("acceleratorType", "ACCELERATOR_TYPE_UNSPECIFIED")
    if isinstance(accelerator, int):
        from google.cloud.aiplatform_v1beta1.types import accelerator_type

        accelerator = accelerator_type.AcceleratorType(accelerator).name
    return {
        "machine_type": spec.get("machineType", ""),
        "accelerator_type": accelerator,
        "accelerator_count": int(spec.get("acceleratorCount", 0)),
    }


def classify_rpc_status(code: int, message: str, region: str) -> DeployError:
    """A failed operation's google.rpc.Status, classified like a failed call."""
    from google.api_core import exceptions

    return classify(exceptions.from_grpc_status(code, message), region)
