"""The emulator's Compute Engine (addresses, forwarding rules, region operations) on a test
clock, the private endpoints' service attachments and query access, and the PSC certificate.
No sockets: listeners are recorded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from modeldrop.local.vertex.checks import DeploySpec, MachineSpec
from modeldrop.local.vertex.compute import API, Compute, ComputeError
from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.psc import ENVIRON_KEY, PscApp, dns_name
from modeldrop.local.vertex.resources import Attachment, Registry, service_attachment_name
from modeldrop.local.vertex.tls import (
    CA_FILE,
    CONSTRAINTS,
    PSC_NAMES,
    local_ca,
    server_certificate,
)
from tests.fixtures.vertex import FakeClock

P, R = "net-project", "us-central1"
SA = "projects/qabc-tp/regions/us-central1/serviceAttachments/gkedpm-1"
ENDPOINT = "projects/vertex-project/locations/us-central1/endpoints/ep"
SUBNET = f"projects/{P}/regions/{R}/subnetworks/psc"


class Recorded:
    """Listeners that record start and stop (Compute's Listeners protocol)."""

    def __init__(self, fail: bool = False) -> None:
        self.started: list[tuple[str, str]] = []
        self.stopped: list[str] = []
        self.fail = fail

    def start(self, ip: str, attachment: Attachment) -> int:
        if self.fail:
            raise OSError("port taken")
        self.started.append((ip, attachment.endpoint))
        return len(self.started)

    def stop(self, ip: str, token: int | None = None) -> None:
        self.stopped.append(ip)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def live() -> dict[str, Attachment]:
    return {SA: Attachment(SA, ENDPOINT, ("vertex-project", P))}


@pytest.fixture
def listeners() -> Recorded:
    return Recorded()


@pytest.fixture
def compute(clock: FakeClock, live: dict[str, Attachment], listeners: Recorded) -> Compute:
    return Compute(live.get, listeners, delay=1.0, clock=clock, timers=False)


def reserve(compute: Compute, clock: FakeClock, name: str = "ip", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "addressType": "INTERNAL", "subnetwork": SUBNET, **extra}
    compute.insert_address(P, R, body)
    clock.advance(1)
    return compute.get_address(P, R, name)


def rule_body(name: str = "fr", ip: str = "ip", target: str = SA) -> dict[str, Any]:
    return {"name": name, "IPAddress": ip, "network": "default", "target": target}


def error_of(call: Any) -> ComputeError:
    with pytest.raises(ComputeError) as caught:
        call()
    return caught.value


def test_an_operation_goes_pending_running_done_and_its_address_reserved(
    compute: Compute, clock: FakeClock
) -> None:
    body = {"name": "ip", "addressType": "INTERNAL", "subnetwork": "psc"}
    operation = compute.insert_address(P, R, body)
    assert operation["kind"] == "compute#operation" and operation["status"] == "PENDING"
    assert re.fullmatch(r"operation-\d{13}-[0-9a-f]{13}-[0-9a-f]{8}-[0-9a-f]{8}", operation["name"])
    assert operation["operationType"] == "insert" and operation["progress"] == 0
    assert operation["targetLink"] == f"{API}projects/{P}/regions/{R}/addresses/ip"
    assert operation["selfLink"] == f"{API}projects/{P}/regions/{R}/operations/{operation['name']}"
    assert compute.get_address(P, R, "ip")["status"] == "RESERVING"
    clock.advance(0.5)
    assert compute.get_operation(P, R, operation["name"])["status"] == "RUNNING"
    clock.advance(0.5)
    done = compute.get_operation(P, R, operation["name"])
    assert done["status"] == "DONE" and done["progress"] == 100 and "error" not in done
    assert done["endTime"] and done["startTime"]
    address = compute.get_address(P, R, "ip")
    assert address["status"] == "RESERVED" and address["address"] == "127.0.0.2"
    assert address["subnetwork"] == API + SUBNET  # a bare name is the region's subnetwork
    assert address["kind"] == "compute#address" and address["addressType"] == "INTERNAL"
    assert address["purpose"] == "GCE_ENDPOINT" and "users" not in address
    assert compute.wait_operation(P, R, operation["name"], timeout=0)["status"] == "DONE"


def test_insert_refusals_are_shaped_as_compute_engine_answers(
    compute: Compute, clock: FakeClock
) -> None:
    reserve(compute, clock)
    taken = error_of(lambda: compute.insert_address(P, R, {"name": "ip", "subnetwork": "x"}))
    assert (taken.http_status, taken.reason) == (400, "invalid")  # EXTERNAL: not emulated
    body = {"name": "ip", "addressType": "INTERNAL", "subnetwork": "x"}
    exists = error_of(lambda: compute.insert_address(P, R, body))
    assert exists.to_json() == {
        "error": {
            "code": 409,
            "message": f"The resource 'projects/{P}/regions/{R}/addresses/ip' already exists",
            "errors": [
                {
                    "message": f"The resource 'projects/{P}/regions/{R}/addresses/ip' already "
                    "exists",
                    "domain": "global",
                    "reason": "alreadyExists",
                }
            ],
        }
    }
    bad = error_of(lambda: compute.insert_address(P, R, {**body, "name": "Bad_Name"}))
    assert bad.http_status == 400 and "resource.name" in bad.message
    elsewhere = f"projects/{P}/regions/europe-west4/subnetworks/psc"
    far = error_of(
        lambda: compute.insert_address(P, R, {**body, "name": "b", "subnetwork": elsewhere})
    )
    assert far.http_status == 400 and "region" in far.message
    assert error_of(lambda: compute.get_address(P, R, "nope")).reason == "notFound"
    scheme = error_of(
        lambda: compute.insert_forwarding_rule(
            P, R, {**rule_body(), "loadBalancingScheme": "INTERNAL"}
        )
    )
    assert scheme.http_status == 400 and "loadBalancingScheme" in scheme.message
    missing = error_of(lambda: compute.insert_forwarding_rule(P, R, rule_body(ip="ghost")))
    assert missing.http_status == 404
    unknown_ip = error_of(lambda: compute.insert_forwarding_rule(P, R, rule_body(ip="127.0.5.5")))
    assert unknown_ip.http_status == 400 and "IPAddress" in unknown_ip.message


def test_explicit_addresses_and_the_pool(compute: Compute, clock: FakeClock) -> None:
    assert reserve(compute, clock, "a", address="127.0.0.9")["address"] == "127.0.0.9"
    assert reserve(compute, clock, "b")["address"] == "127.0.0.2"
    twice = error_of(lambda: reserve(compute, clock, "c", address="127.0.0.9"))
    assert twice.http_status == 400
    outside = error_of(lambda: reserve(compute, clock, "d", address="10.0.0.5"))
    assert outside.http_status == 400 and "127.0.0.0/16" in outside.message
    own = error_of(lambda: reserve(compute, clock, "e", address="127.0.0.1"))
    assert own.http_status == 400


def test_busy_ips_are_skipped(clock: FakeClock, live: dict[str, Attachment]) -> None:
    compute = Compute(
        live.get,
        Recorded(),
        delay=1.0,
        clock=clock,
        timers=False,
        ip_free=lambda ip: ip != "127.0.0.2",
    )
    assert reserve(compute, clock)["address"] == "127.0.0.3"


def test_a_rule_is_accepted_listens_and_holds_its_address(
    compute: Compute, clock: FakeClock, listeners: Recorded
) -> None:
    address = reserve(compute, clock)
    operation = compute.insert_forwarding_rule(P, R, rule_body(ip=address["selfLink"]))
    pending = compute.get_forwarding_rule(P, R, "fr")
    assert pending["pscConnectionStatus"] == "PENDING" and listeners.started == []
    clock.advance(1)
    assert compute.get_operation(P, R, operation["name"])["status"] == "DONE"
    rule = compute.get_forwarding_rule(P, R, "fr")
    assert rule["pscConnectionStatus"] == "ACCEPTED" and rule["IPAddress"] == "127.0.0.2"
    assert rule["kind"] == "compute#forwardingRule" and rule["target"] == API + SA
    assert rule["network"] == f"{API}projects/{P}/global/networks/default"
    assert rule["pscConnectionId"].isdigit() and "loadBalancingScheme" not in rule
    assert listeners.started == [("127.0.0.2", ENDPOINT)]
    held = compute.get_address(P, R, "ip")
    assert held["status"] == "IN_USE" and held["users"] == [rule["selfLink"]]
    in_use = error_of(lambda: compute.delete_address(P, R, "ip"))
    assert in_use.reason == "resourceInUseByAnotherResource"
    assert in_use.message == (
        f"The address resource 'projects/{P}/regions/{R}/addresses/ip' is already being used "
        f"by 'projects/{P}/regions/{R}/forwardingRules/fr'"
    )
    second = error_of(lambda: compute.insert_forwarding_rule(P, R, rule_body("fr2", "127.0.0.2")))
    assert second.reason == "resourceInUseByAnotherResource"
    listed = compute.list_forwarding_rules(P, R)
    assert listed["kind"] == "compute#forwardingRuleList" and len(listed["items"]) == 1


def test_deleting_takes_an_operation_and_frees_the_address(
    compute: Compute, clock: FakeClock, listeners: Recorded
) -> None:
    reserve(compute, clock)
    compute.insert_forwarding_rule(P, R, rule_body(ip="127.0.0.2"))
    clock.advance(1)
    operation = compute.delete_forwarding_rule(P, R, "fr")
    assert operation["operationType"] == "delete"
    assert error_of(lambda: compute.delete_forwarding_rule(P, R, "fr")).reason == "resourceNotReady"
    assert compute.get_forwarding_rule(P, R, "fr")  # still there until the operation is done
    clock.advance(1)
    assert error_of(lambda: compute.get_forwarding_rule(P, R, "fr")).http_status == 404
    compute.settle()
    assert compute.get_address(P, R, "ip")["status"] == "RESERVED"
    compute.delete_address(P, R, "ip")
    clock.advance(1)
    assert error_of(lambda: compute.get_address(P, R, "ip")).http_status == 404
    assert reserve(compute, clock, "again")["address"] == "127.0.0.2"  # the IP is free again
    assert compute.snapshot()["psc_listeners"] == []


def test_outsiders_are_rejected_and_a_gone_attachment_closes_the_rule(
    compute: Compute, clock: FakeClock, live: dict[str, Attachment], listeners: Recorded
) -> None:
    live[SA] = Attachment(SA, ENDPOINT, ("vertex-project",))  # P is not allowed
    reserve(compute, clock)
    compute.insert_forwarding_rule(P, R, rule_body(ip="127.0.0.2"))
    clock.advance(1)
    assert compute.get_forwarding_rule(P, R, "fr")["pscConnectionStatus"] == "REJECTED"
    assert listeners.started == []

    live[SA] = Attachment(SA, ENDPOINT, (P,))
    reserve(compute, clock, "ip2")
    compute.insert_forwarding_rule(P, R, rule_body("fr2", "127.0.0.3"))
    clock.advance(1)
    assert compute.get_forwarding_rule(P, R, "fr2")["pscConnectionStatus"] == "ACCEPTED"
    del live[SA]
    compute.attachment_closed(SA)
    assert compute.get_forwarding_rule(P, R, "fr2")["pscConnectionStatus"] == "CLOSED"


def test_an_unknown_attachment_fails_the_operation(compute: Compute, clock: FakeClock) -> None:
    reserve(compute, clock)
    ghost = "projects/x-tp/regions/us-central1/serviceAttachments/ghost"
    operation = compute.insert_forwarding_rule(P, R, rule_body(ip="127.0.0.2", target=ghost))
    clock.advance(1)
    done = compute.get_operation(P, R, operation["name"])
    assert done["status"] == "DONE" and done["httpErrorStatusCode"] == 404
    assert done["error"]["errors"] == [
        {"code": "RESOURCE_NOT_FOUND", "message": f"The resource '{ghost}' was not found"}
    ]
    assert error_of(lambda: compute.get_forwarding_rule(P, R, "fr")).http_status == 404
    assert compute.get_address(P, R, "ip")["status"] == "RESERVED"


def test_a_listener_that_cannot_start_fails_the_operation(
    clock: FakeClock, live: dict[str, Attachment]
) -> None:
    compute = Compute(live.get, Recorded(fail=True), delay=1.0, clock=clock, timers=False)
    reserve(compute, clock)
    operation = compute.insert_forwarding_rule(P, R, rule_body(ip="127.0.0.2"))
    clock.advance(1)
    done = compute.get_operation(P, R, operation["name"])
    assert done["error"]["errors"][0]["code"] == "RESOURCE_NOT_READY"


def test_no_delay_completes_in_the_answer(live: dict[str, Attachment]) -> None:
    compute = Compute(live.get, Recorded(), delay=0)
    body = {"name": "ip", "addressType": "INTERNAL", "subnetwork": SUBNET}
    assert compute.insert_address(P, R, body)["status"] == "DONE"


# private endpoints: service attachments and query access
def private_spec(project: str = "vertex-project") -> DeploySpec:
    return DeploySpec(
        project=project,
        location="us-central1",
        gcs_uri="gs://b/models/m",
        model_display_name="m",
        endpoint_display_name="e",
        model_user_id=None,
        endpoint_user_id="ep",
        dedicated_endpoint=True,
        machine=MachineSpec("g2-standard-12", "NVIDIA_L4", 1),
        psc={"enablePrivateServiceConnect": True, "projectAllowlist": [project, P]},
    )


def test_a_private_endpoint_has_an_attachment_while_it_has_a_model() -> None:
    registry = Registry(dns="127.0.0.1:9")
    closed: list[str] = []
    registry.attachment_closed = closed.append
    spec = private_spec()
    start = registry.start_deploy(spec)
    deployed_id = registry.finish_deploy(start, spec)
    endpoint = registry.endpoint(start.endpoint)
    attachment = endpoint["deployedModels"][0]["privateEndpoints"]["serviceAttachment"]
    assert attachment == service_attachment_name(start.endpoint, deployed_id)
    assert re.fullmatch(
        r"projects/q[0-9a-f]{16}p-tp/regions/us-central1/serviceAttachments/gkedpm-[0-9a-f]{30}",
        attachment,
    )
    assert endpoint["privateServiceConnectConfig"]["serviceAttachment"] == attachment
    assert "dedicatedEndpointDns" not in endpoint and "dedicatedEndpointEnabled" not in endpoint
    assert registry.attachment(attachment) == Attachment(
        attachment, start.endpoint, ("vertex-project", P)
    )
    registry.query_access(start.endpoint, attachment)  # through its own PSC endpoint: fine
    with pytest.raises(RpcError) as public:
        registry.query_access(start.endpoint, None)
    assert public.value.http_status == 403 and attachment in public.value.message
    with pytest.raises(RpcError) as other:
        registry.query_access(start.endpoint, SA)
    assert other.value.http_status == 404

    registry.remove_deployed_model(start.endpoint, deployed_id)
    assert closed == [attachment] and registry.attachment(attachment) is None
    assert (
        "serviceAttachment" not in registry.endpoint(start.endpoint)["privateServiceConnectConfig"]
    )


def test_a_public_endpoint_is_not_served_through_a_psc_endpoint() -> None:
    registry = Registry(dns="127.0.0.1:9")
    spec = private_spec()
    public = DeploySpec(**{**vars(spec), "psc": None})
    start = registry.start_deploy(public)
    registry.finish_deploy(start, public)
    assert registry.endpoint(start.endpoint)["dedicatedEndpointDns"] == "127.0.0.1:9"
    registry.query_access(start.endpoint, None)
    with pytest.raises(RpcError) as through:
        registry.query_access(start.endpoint, SA)
    assert through.value.http_status == 404
    with pytest.raises(RpcError) as unknown:
        registry.query_access(start.endpoint + "x", None)
    assert unknown.value.http_status == 404


def test_a_psc_listener_passes_query_routes_only() -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ)
        start_response("200 OK", [])
        return [b"ok"]

    psc = PscApp(app, Attachment(SA, ENDPOINT, ()), "127.0.0.2")
    statuses: list[str] = []
    for method, path in (
        ("POST", f"/v1beta1/{ENDPOINT}/chat/completions"),
        ("POST", f"/v1/{ENDPOINT}:predict"),
        ("POST", f"/v1/{ENDPOINT}:streamRawPredict"),
        ("GET", f"/v1beta1/{ENDPOINT}"),
        ("POST", f"/v1beta1/{ENDPOINT}:undeployModel"),
        ("GET", "/emulator/state"),
    ):
        psc({"REQUEST_METHOD": method, "PATH_INFO": path}, lambda s, h: statuses.append(s))
    assert statuses == ["200 OK"] * 3 + ["404 NOT FOUND"] * 3
    assert [e[ENVIRON_KEY] for e in seen] == [SA] * 3


def test_the_documented_dns_name() -> None:
    assert dns_name(ENDPOINT, "123") == "ep-us-central1-123.prediction.p.vertexai.goog"


# the certificate of PSC endpoints
def verify(ca: x509.Certificate, cert: x509.Certificate, name: str) -> None:
    policy = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(name))
    policy.verify(cert, [])


def test_the_psc_certificate_verifies_for_names_under_the_documented_wildcard(
    tmp_path: Path,
) -> None:
    ca, key = local_ca(tmp_path)
    cert, _ = server_certificate(ca, key, PSC_NAMES)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.prediction.p.vertexai.goog"]
    verify(ca, cert, "mg-endpoint-1-us-central1-123.prediction.p.vertexai.goog")
    for wrong in ("prediction.p.vertexai.goog", "a.b.prediction.p.vertexai.goog", "localhost"):
        with pytest.raises(VerificationError):
            verify(ca, cert, wrong)


def test_a_ca_without_the_psc_name_constraint_is_made_anew(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from modeldrop.local.vertex import tls

    old = tls.CONSTRAINTS[:2]  # as an older emulator made it
    tls_constraints = tls.CONSTRAINTS
    try:
        tls.CONSTRAINTS = old
        ca_old, _ = local_ca(tmp_path)
    finally:
        tls.CONSTRAINTS = tls_constraints
    ca_new, _ = local_ca(tmp_path)
    assert ca_new.serial_number != ca_old.serial_number
    on_disk = x509.load_pem_x509_certificate((tmp_path / CA_FILE).read_bytes())
    assert on_disk.public_bytes(serialization.Encoding.PEM) == ca_new.public_bytes(
        serialization.Encoding.PEM
    )
    permitted = on_disk.extensions.get_extension_for_class(x509.NameConstraints).value
    assert list(permitted.permitted_subtrees or []) == CONSTRAINTS
    assert local_ca(tmp_path)[0].serial_number == ca_new.serial_number  # and reused after
