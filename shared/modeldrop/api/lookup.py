"""The DEPLOYED record a query goes to: from the per-instance cache, or the store."""

from __future__ import annotations

from modeldrop.api.context import ApiContext
from modeldrop.api.errors import ApiError, no_deployment
from modeldrop.domain.deployment import Deployment, State


def deployed(ctx: ApiContext, deployment_id: str) -> Deployment:
    """The DEPLOYED record with this id: 404 when unknown, 409 (with its state) otherwise."""
    cache = ctx.deployed
    if cached := cache.get(deployment_id):
        return cached
    record = ctx.store.get(deployment_id)
    if record is None:
        raise no_deployment(deployment_id)
    return cache.put(deployment_id, require_deployed(record))


def require_deployed(record: Deployment) -> Deployment:
    reachable = record.endpoint and (record.endpoint_dns or record.private_endpoint)
    if record.state is not State.DEPLOYED or not reachable:
        hint = {
            State.DEPLOYING: "The endpoint is still coming up; poll the status URL.",
            State.REJECTED: "Validation rejected the upload; see its findings.",
            State.FAILED: "The deploy failed; see its error and hint.",
            State.UNDEPLOYED: "Its endpoint was deleted (its history says why); "
            f"POST /v1/deployments/{record.id}:redeploy deploys it again.",
        }.get(record.state, "Only DEPLOYED deployments answer queries.")
        raise ApiError(
            f"Deployment {record.id} is {record.state}.",
            hint,
            code="NOT_DEPLOYED",
            status=409,
            state=str(record.state),
        )
    return record
