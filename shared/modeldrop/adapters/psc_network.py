"""The PrivateNetwork port on Compute Engine: a private deployment's PSC endpoint is an internal
address in the operator's subnetwork plus a forwarding rule to the endpoint's service
attachment, in the endpoint's region (what the user's document has people click through in the
console, "Crea una conexión de Private Service Connect").

Every call is one idempotent step on resources named after the deployment's attempt
(domain.private_endpoint.resource_names): a step that finds its resource made already goes on
to the next one, so a retry after a crash never makes a second address or rule.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from modeldrop.adapters.compute_rest import ComputeRest
from modeldrop.domain.deployment import Deployment
from modeldrop.domain.private_endpoint import (
    network_url,
    private_target,
    resource_names,
    subnetwork_url,
    tls_name,
)
from modeldrop.service.ports import DeployError, PrivateConnection
from modeldrop.settings import Settings

# forwardingRules pscConnectionStatus values (compute v1 ForwardingRule): ACCEPTED is ready,
# PENDING is on its way; the others will not become ready by waiting
READY, CLOSED = "ACCEPTED", "CLOSED"
WAITING = frozenset({"PENDING", "STATUS_UNSPECIFIED", ""})


class PscNetwork:
    """PSC endpoints for private deployments, over the Compute Engine REST API."""

    def __init__(self, settings: Settings, rest: ComputeRest | None = None) -> None:
        self.settings = settings
        self._given = rest

    @cached_property
    def rest(self) -> ComputeRest:
        return self._given or ComputeRest(self.settings)

    def _where(self, deployment: Deployment) -> tuple[str, str, str, str]:
        """(project, region, network URL, subnetwork URL) of the deployment's PSC endpoint."""
        s = self.settings
        target = private_target(
            deployment.overrides,
            s.project,
            s.psc_project_allowlist,
            s.psc_network,
            s.psc_subnetwork,
        )
        if target is None or not (target.network and target.subnetwork):
            raise DeployError(
                f"Deployment {deployment.id} is private but has no network or subnetwork for its "
                "PSC endpoint.",
                "Set MODELDROP_PSC_NETWORK and MODELDROP_PSC_SUBNETWORK (or private_endpoint."
                "network and .subnetwork in modeldrop.yaml).",
                code="PRIVATE_NETWORK_MISSING",
            )
        region = deployment.region or s.region
        return (
            s.project,
            region,
            network_url(s.project, target.network),
            subnetwork_url(s.project, region, target.subnetwork),
        )

    def connect(
        self, deployment: Deployment, endpoint: str, service_attachment: str
    ) -> PrivateConnection | None:
        """One step: reserve the address, then (once RESERVED) create the forwarding rule; the
        connection once the rule's PSC connection is ACCEPTED. A CLOSED rule (its attachment was
        replaced) is deleted, to be made again; a REJECTED one is an error."""
        project, region, network, subnetwork = self._where(deployment)
        address_name, rule_name = resource_names(deployment)
        address = self.rest.get_address(project, region, address_name)
        if address is None:
            self.rest.insert_address(project, region, address_name, subnetwork)
            return None
        ip = address.get("address")
        if address.get("status") not in ("RESERVED", "IN_USE") or not ip:
            return None  # still being reserved
        rule = self.rest.get_forwarding_rule(project, region, rule_name)
        if rule is None:
            self.rest.insert_forwarding_rule(
                project, region, rule_name, network, _link(address), service_attachment
            )
            return None
        status = str(rule.get("pscConnectionStatus", ""))
        if status in WAITING:
            return None
        if status == CLOSED or _path(str(rule.get("target", ""))) != _path(service_attachment):
            self.rest.delete_forwarding_rule(project, region, rule_name)
            return None
        if status != READY:
            raise DeployError(
                f"The PSC connection of forwarding rule {rule_name} is {status}.",
                f"The endpoint's project allowlist must hold {project} (it is added "
                "automatically); check the forwarding rule in the console, then delete and "
                "upload again.",
                code="PSC_CONNECTION_REFUSED",
            )
        return PrivateConnection(
            ip=ip,
            forwarding_rule=_link(rule),
            address=_link(address),
            service_attachment=service_attachment,
            network=network,
            tls_name=tls_name(endpoint),
        )

    def disconnect(self, deployment: Deployment) -> bool:
        """One step: delete the forwarding rule, then (once it is gone) the address."""
        project, region = self.settings.project, deployment.region or self.settings.region
        address_name, rule_name = resource_names(deployment)
        if not self.rest.delete_forwarding_rule(project, region, rule_name):
            return False
        return self.rest.delete_address(project, region, address_name)


def _link(resource: dict[str, Any]) -> str:
    """A Compute resource's name as the API links it (selfLink without the API's prefix)."""
    return _path(str(resource.get("selfLink") or resource.get("name", "")))


def _path(reference: str) -> str:
    """projects/... of a Compute reference, whether a full URL or a partial one."""
    return reference.split("/compute/v1/", 1)[-1]
