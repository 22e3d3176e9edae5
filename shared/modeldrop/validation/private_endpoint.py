"""The private-endpoint finding: a private deployment needs a network and a subnetwork for its
Private Service Connect endpoint, known before anything is deployed."""

from __future__ import annotations

from modeldrop.domain.findings import Finding, error
from modeldrop.domain.private_endpoint import PrivateTarget

OVERRIDES_FILE = "modeldrop.yaml"


def private_network_findings(target: PrivateTarget | None) -> list[Finding]:
    """PRIVATE_NETWORK_MISSING when a private deployment lacks the network or subnetwork its
    PSC endpoint is made in; nothing for a public one."""
    if target is None:
        return []
    missing = [
        name
        for name, value in (
            ("MODELDROP_PSC_NETWORK (or private_endpoint.network)", target.network),
            ("MODELDROP_PSC_SUBNETWORK (or private_endpoint.subnetwork)", target.subnetwork),
        )
        if not value
    ]
    if not missing:
        return []
    return [
        error(
            "PRIVATE_NETWORK_MISSING",
            "The endpoint is private (Private Service Connect), but no "
            f"{' and no '.join(missing)} says where its PSC endpoint goes, so nothing could "
            "reach it once deployed.",
            OVERRIDES_FILE,
            "Set the operator's MODELDROP_PSC_NETWORK and MODELDROP_PSC_SUBNETWORK (Terraform "
            "psc_network, psc_subnetwork), or private_endpoint.network and .subnetwork in "
            "modeldrop.yaml; or drop private_endpoint for a public endpoint. Then upload again.",
        )
    ]
