"""Taking a deployment down: UNDEPLOYING with the reason, then UNDEPLOYED once its endpoint is
gone. One path for DELETE, retirement of a replaced revision and idle undeploy."""

from __future__ import annotations

from modeldrop.domain.deployment import Deployment, State, advance
from modeldrop.service import private_link
from modeldrop.service.context import Context
from modeldrop.service.records import commit


def expected_endpoint(ctx: Context, record: Deployment) -> str:
    """The endpoint the record's current (or last) attempt creates (its id is derived from the
    record's and the attempt number)."""
    return record.attempt_endpoint(ctx.settings.project, ctx.settings.region)


def begin(ctx: Context, record: Deployment, why: str) -> Deployment | None:
    """Move a DEPLOYED or FAILED record to UNDEPLOYING (`why` is the transition's note) and take
    the first undeploy step. The record as it then stands; None when someone else changed it
    first. Raises DeployError when Vertex AI refuses the step (reconcile goes on with it)."""
    undeploying = commit(ctx, advance(record, State.UNDEPLOYING, ctx.clock(), why))
    return step(ctx, undeploying) or undeploying if undeploying else None


def step(ctx: Context, record: Deployment) -> Deployment | None:
    """One undeploy step of an UNDEPLOYING record; UNDEPLOYED once its endpoint is gone, its
    note saying why it was taken down.

    A failed deploy may have left its endpoint behind without recording it, so the endpoint
    the record's deploy would have created is cleaned up too.
    """
    endpoint = record.endpoint or expected_endpoint(ctx, record)
    if not private_link.remove_endpoint(ctx, record, endpoint):
        return None
    why = record.history[-1].note if record.history else ""
    note = f"endpoint deleted ({why})" if why else "endpoint deleted"
    return commit(ctx, advance(record, State.UNDEPLOYED, ctx.clock(), note))
