"""Private endpoints (Private Service Connect): whether a deployment is one, and the names of
what connects it (pure: no I/O).

A deployment is private when its modeldrop.yaml's `private_endpoint` is enabled, or when the
operator set MODELDROP_PSC_PROJECT_ALLOWLIST for every deployment. Its endpoint is then reached
only through a PSC endpoint in the operator's VPC: an internal address in the subnetwork and a
forwarding rule to the endpoint's service attachment, named after the deployment's attempt so
that a retry finds its own resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldrop.domain.deployment import Deployment, user_id


@dataclass(frozen=True)
class PrivateTarget:
    """Where a private deployment connects: the projects allowed to reach its service attachment
    (the operator's own project first) and the network and subnetwork of its PSC endpoint
    (None when neither setting nor modeldrop.yaml names one)."""

    project_allowlist: tuple[str, ...]
    network: str | None
    subnetwork: str | None


def private_target(
    overrides: dict[str, Any],
    project: str,
    allowlist: tuple[str, ...],
    network: str = "",
    subnetwork: str = "",
) -> PrivateTarget | None:
    """The private target of a deployment with these overrides, or None for a public one.
    modeldrop.yaml's `private_endpoint` (enabled, project_allowlist, network, subnetwork) wins
    over the operator's settings; the consumer project is always allowed."""
    block = overrides.get("private_endpoint")
    if block is None and not allowlist:
        return None
    block = block or {}
    if not block.get("enabled", True):
        return None
    projects = (project, *block.get("project_allowlist", allowlist))
    return PrivateTarget(
        project_allowlist=tuple(dict.fromkeys(projects)),
        network=block.get("network") or network or None,
        subnetwork=block.get("subnetwork") or subnetwork or None,
    )


def network_url(project: str, network: str) -> str:
    """A network as Compute Engine names it (a bare name is in `project`)."""
    return network if "/" in network else f"projects/{project}/global/networks/{network}"


def subnetwork_url(project: str, region: str, subnetwork: str) -> str:
    """A subnetwork as Compute Engine names it (a bare name is in `project` and `region`)."""
    if "/" in subnetwork:
        return subnetwork
    return f"projects/{project}/regions/{region}/subnetworks/{subnetwork}"


PSC_DOMAIN = "prediction.p.vertexai.goog"


def tls_name(endpoint: str) -> str:
    """The name a PSC endpoint of `endpoint` (projects/NUMBER/locations/REGION/endpoints/ID) is
    verified as: ENDPOINT_ID-REGION-PROJECT_NUMBER.prediction.p.vertexai.goog, the private DNS
    name Vertex AI documents for it, which its certificate (*.prediction.p.vertexai.goog) covers
    ("Use dedicated private endpoints based on Private Service Connect for online inference")."""
    parts = endpoint.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[4] != "endpoints":
        raise ValueError(f"not an endpoint resource name: {endpoint[:200]!r}")
    return f"{parts[5]}-{parts[3]}-{parts[1]}.{PSC_DOMAIN}"


def resource_names(deployment: Deployment) -> tuple[str, str]:
    """The (address, forwarding rule) names of the deployment's current attempt: Compute
    Engine names (a letter first, [a-z0-9-], at most 63 characters)."""
    attempt = f"-{deployment.deploy_round}-{deployment.attempt}"
    return (
        user_id("md-", deployment.id, f"{attempt}-ip"),
        user_id("md-", deployment.id, f"{attempt}-psc"),
    )
