"""Private deployments' PSC endpoints: connected once the deploy is done (before the smoke
test, which queries through it), removed before the endpoint is deleted.

Each step is idempotent: the address and forwarding rule are named after the deployment's
attempt (domain.private_endpoint), so a worker that crashed between creating the rule and
recording it finds that same rule the next time, never a second one.
"""

from __future__ import annotations

from modeldrop.domain.deployment import Deployment, update
from modeldrop.domain.private_endpoint import private_target
from modeldrop.service.context import Context
from modeldrop.service.ports import EndpointInfo
from modeldrop.service.records import commit


def is_private(ctx: Context, record: Deployment) -> bool:
    """Whether the record's endpoint is private (Private Service Connect)."""
    settings = ctx.settings
    return (
        private_target(record.overrides, settings.project, settings.psc_project_allowlist)
        is not None
    )


def connect(ctx: Context, record: Deployment, info: EndpointInfo) -> Deployment | None:
    """One step of connecting a private record whose endpoint is ready: the record with its
    `private_endpoint` once the PSC endpoint is ready, None while it is being made (or when
    another worker changed the record first). Raises DeployError."""
    if record.private_endpoint or not info.service_attachment:
        return record
    connection = ctx.private_network.connect(record, info.name, info.service_attachment)
    if connection is None:
        return None
    return commit(ctx, update(record, ctx.clock(), private_endpoint=connection.as_dict()))


def remove_endpoint(ctx: Context, record: Deployment, endpoint: str) -> bool:
    """One step of deleting `endpoint`, a private one's PSC endpoint first; True once gone."""
    if is_private(ctx, record) and not ctx.private_network.disconnect(record):
        return False
    return ctx.deployer.undeploy(endpoint)
