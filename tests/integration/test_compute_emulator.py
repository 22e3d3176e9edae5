"""Private Service Connect end to end on the emulator: a private endpoint's service attachment,
an address and a forwarding rule made through ComputeRest, queries over TLS to the PSC
endpoint's IP (the certificate checked for the documented *.prediction.p.vertexai.goog name
against the emulator's CA), the public routes refusing, and the teardown.

The echo engine answers (no torch needed): these tests exercise the network path, not serving.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from modeldrop.adapters.compute_rest import ComputeRest, is_done, operation_error
from modeldrop.local.vertex import VertexEmulator
from modeldrop.local.vertex.psc import dns_name
from modeldrop.service.ports import DeployError
from tests.fixtures.vertex import BUCKET, compute_settings, psc_session, upload_folder
from tests.fixtures.vertex_requests import sdk_deploy_body

PROJECT, REGION = "modeldrop-local", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
CONSUMER = "client-project"  # another allowlisted project (the consumer VPC's)
OUTSIDER = "other-project"  # not in the allowlist
SUBNET = "psc-subnet"
NETWORK = "default"
ECHO_URI = f"gs://{BUCKET}/models/psc-echo"
ATTACHMENT = re.compile(
    r"projects/q[0-9a-f]{16}p-tp/regions/us-central1/serviceAttachments/gkedpm-[0-9a-f]{30}"
)
CHAT = {"max_tokens": 4, "messages": [{"role": "user", "content": "a b c"}]}


@pytest.fixture(scope="module")
def emulator(gcs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VertexEmulator]:
    folder = tmp_path_factory.mktemp("psc") / "psc-echo"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    upload_folder(gcs.client, folder, "models/psc-echo")
    cache = folder.parent / "cache"
    with VertexEmulator(
        engine="echo", cache_dir=cache, faults="", ca_dir=cache, compute_delay=0.1
    ) as running:
        yield running


def deploy(emulator: VertexEmulator, endpoint_id: str, private: bool = True) -> dict[str, Any]:
    """Deploy the echo model to `endpoint_id` (PSC, allowlisting PROJECT and CONSUMER) and wait;
    the endpoint's JSON."""
    body = sdk_deploy_body(ECHO_URI, endpoint_id, f"{endpoint_id}-model")
    if private:
        body["endpointConfig"]["privateServiceConnectConfig"] = {
            "enablePrivateServiceConnect": True,
            "projectAllowlist": [PROJECT, CONSUMER],
        }
    answer = requests.post(f"{emulator.url}/v1beta1/{PARENT}:deploy", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 30
    while not (operation := requests.get(f"{emulator.url}/ui/{answer.json()['name']}").json())[
        "done"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "error" not in operation, operation
    return endpoint_json(emulator, endpoint_id)


def endpoint_json(emulator: VertexEmulator, endpoint_id: str) -> dict[str, Any]:
    got = requests.get(f"{emulator.url}/v1beta1/{PARENT}/endpoints/{endpoint_id}", timeout=10)
    assert got.status_code == 200, got.text
    return dict(got.json())


def settle(compute: ComputeRest, project: str, operation: dict[str, Any] | None) -> dict[str, Any]:
    """Poll a region operation (GET, as a reconcile loop would) until DONE."""
    assert operation is not None
    deadline = time.monotonic() + 10
    while not is_done(operation):
        assert time.monotonic() < deadline, operation
        time.sleep(0.02)
        operation = compute.get_operation(project, REGION, operation["name"])
    return operation


def connect_refused(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2):
            return False
    except OSError:
        return True


@dataclass
class Psc:
    """A PSC endpoint to a deployed private endpoint: where to query and what to verify."""

    endpoint: dict[str, Any]
    attachment: str
    ip: str
    base: str  # https://IP:PORT/v1beta1/{endpoint}
    name: str  # the TLS name to verify
    session: requests.Session


def connect(
    emulator: VertexEmulator,
    compute: ComputeRest,
    endpoint: dict[str, Any],
    label: str,
    project: str = PROJECT,
) -> tuple[str, str, dict[str, Any]]:
    """Reserve an address and create a forwarding rule to the endpoint's attachment (names
    from `label`); (address IP, attachment, the rule)."""
    attachment = endpoint["deployedModels"][0]["privateEndpoints"]["serviceAttachment"]
    settle(compute, project, compute.insert_address(project, REGION, f"{label}-ip", SUBNET))
    address = compute.get_address(project, REGION, f"{label}-ip")
    assert address is not None and address["status"] == "RESERVED"
    operation = compute.insert_forwarding_rule(
        project, REGION, f"{label}-fr", NETWORK, address["selfLink"], attachment
    )
    assert operation is not None and operation["status"] in ("PENDING", "RUNNING")
    done = compute.wait_operation(project, REGION, operation["name"])
    assert is_done(done) and operation_error(done) is None, done
    rule = compute.get_forwarding_rule(project, REGION, f"{label}-fr")
    assert rule is not None
    return address["address"], attachment, rule


@pytest.fixture(scope="module")
def psc(emulator: VertexEmulator) -> Iterator[Psc]:
    endpoint = deploy(emulator, "psc-ep")
    compute = ComputeRest(compute_settings(emulator))
    ip, attachment, rule = connect(emulator, compute, endpoint, "chat")
    assert rule["pscConnectionStatus"] == "ACCEPTED" and rule["IPAddress"] == ip
    name = dns_name(endpoint["name"], "123456789012")
    yield Psc(
        endpoint=endpoint,
        attachment=attachment,
        ip=ip,
        base=f"https://{ip}:{emulator.psc_port}/v1beta1/{endpoint['name']}",
        name=name,
        session=psc_session(name, emulator.ca_path),
    )


def test_a_private_endpoint_reports_a_stable_service_attachment_and_no_public_dns(
    emulator: VertexEmulator, psc: Psc
) -> None:
    endpoint = endpoint_json(emulator, "psc-ep")
    deployed = endpoint["deployedModels"][0]
    assert ATTACHMENT.fullmatch(deployed["privateEndpoints"]["serviceAttachment"])
    assert deployed["privateEndpoints"] == {"serviceAttachment": psc.attachment}  # stable
    assert endpoint["privateServiceConnectConfig"] == {
        "enablePrivateServiceConnect": True,
        "projectAllowlist": [PROJECT, CONSUMER],
        "serviceAttachment": psc.attachment,
    }
    assert "dedicatedEndpointDns" not in endpoint  # as the documented GET of a PSC endpoint


def test_chat_unary_streamed_and_predict_through_the_psc_endpoint(psc: Psc) -> None:
    unary = psc.session.post(f"{psc.base}/chat/completions", json=CHAT, timeout=10)
    assert unary.status_code == 200, unary.text
    assert unary.json()["usage"]["completion_tokens"] == 4
    with psc.session.post(
        f"{psc.base}/chat/completions", json={**CHAT, "stream": True}, stream=True, timeout=10
    ) as streamed:
        assert streamed.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in streamed.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "data: [DONE]" and len(events) == 6  # 4 tokens, usage, [DONE]
    predict = psc.session.post(
        f"{psc.base}:predict", json={"instances": [{"prompt": "x y"}]}, timeout=10
    )
    assert predict.json()["predictions"][0].startswith("Prompt:\nx y\nOutput:\n")
    v1 = psc.base.replace("/v1beta1/", "/v1/")
    raw = psc.session.post(f"{v1}:streamRawPredict", json={**CHAT, "stream": True}, timeout=10)
    assert raw.status_code == 200 and raw.text.rstrip().endswith("data: [DONE]")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_certificate_is_for_the_documented_name_only(
    emulator: VertexEmulator, psc: Psc
) -> None:
    url = f"{psc.base}:predict"
    body = {"instances": [{"prompt": "x"}]}
    other = dns_name(psc.endpoint["name"].replace("psc-ep", "other-ep"), "1")  # any name of it
    assert psc_session(other, emulator.ca_path).post(url, json=body, timeout=10).ok
    with pytest.raises(requests.exceptions.SSLError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
        requests.post(url, json=body, timeout=10, verify=str(emulator.ca_path))  # by IP
    with pytest.raises(requests.exceptions.SSLError):
        psc_session("localhost", emulator.ca_path).post(url, json=body, timeout=10)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        psc_session(psc.name, requests.certs.where()).post(url, json=body, timeout=10)
    # the documented samples that use the bare IP skip verification (curl -k, verify=False)
    assert requests.post(url, json=body, timeout=10, verify=False).ok


def test_the_public_routes_refuse_a_private_endpoint(emulator: VertexEmulator, psc: Psc) -> None:
    for base in (f"https://{emulator.dedicated_dns}", emulator.url):
        refused = requests.post(
            f"{base}/v1beta1/{psc.endpoint['name']}/chat/completions",
            json=CHAT,
            timeout=10,
            verify=str(emulator.ca_path),
        )
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["status"] == "PERMISSION_DENIED" and "private endpoint" in error["message"]
        assert psc.attachment in error["message"]


def test_a_psc_endpoint_serves_its_own_endpoints_queries_only(
    emulator: VertexEmulator, psc: Psc
) -> None:
    public = deploy(emulator, "public-ep", private=False)
    through = psc.session.post(
        f"https://{psc.ip}:{emulator.psc_port}/v1beta1/{public['name']}/chat/completions",
        json=CHAT,
        timeout=10,
    )
    assert through.status_code == 404 and "not served by this" in through.json()["error"]["message"]
    control = psc.session.get(
        f"https://{psc.ip}:{emulator.psc_port}/v1beta1/{psc.endpoint['name']}", timeout=10
    )
    assert control.status_code == 404 and control.json()["error"]["status"] == "NOT_FOUND"
    # the public endpoint still answers on the dedicated route
    direct = requests.post(
        f"https://{emulator.dedicated_dns}/v1beta1/{public['name']}/chat/completions",
        json=CHAT,
        timeout=10,
        verify=str(emulator.ca_path),
    )
    assert direct.status_code == 200, direct.text


def test_inserts_are_idempotent_and_state_lists_the_psc_endpoint(
    emulator: VertexEmulator, psc: Psc
) -> None:
    compute = ComputeRest(compute_settings(emulator))
    assert compute.insert_address(PROJECT, REGION, "chat-ip", SUBNET) is None  # 409: there
    rule = compute.get_forwarding_rule(PROJECT, REGION, "chat-fr")
    assert rule is not None
    again = compute.insert_forwarding_rule(
        PROJECT, REGION, "chat-fr", NETWORK, psc.ip, psc.attachment
    )
    assert again is None
    state = emulator.state()
    assert any(a["name"] == "chat-ip" and a["status"] == "IN_USE" for a in state["addresses"])
    assert any(r["name"] == "chat-fr" for r in state["forwardingRules"])
    assert {"ip": psc.ip, "forwarding_rule": rule["selfLink"].split("/v1/")[1]} | {
        "service_attachment": psc.attachment
    } in state["psc_listeners"]


def test_an_address_in_use_cannot_go_and_the_teardown_stops_the_listener(
    emulator: VertexEmulator,
) -> None:
    endpoint = deploy(emulator, "teardown-ep")
    compute = ComputeRest(compute_settings(emulator))
    ip, _, _ = connect(emulator, compute, endpoint, "gone")
    name = dns_name(endpoint["name"], "1")
    url = f"https://{ip}:{emulator.psc_port}/v1beta1/{endpoint['name']}:predict"
    assert (
        psc_session(name, emulator.ca_path)
        .post(url, json={"instances": [{"prompt": "x"}]}, timeout=10)
        .ok
    )

    with pytest.raises(DeployError) as in_use:
        compute.delete_address(PROJECT, REGION, "gone-ip")
    assert in_use.value.code == "COMPUTE_IN_USE" and in_use.value.retryable
    assert "forwardingRules/gone-fr" in in_use.value.message

    assert compute.delete_forwarding_rule(PROJECT, REGION, "gone-fr") is False  # started
    deadline = time.monotonic() + 10
    while not compute.delete_forwarding_rule(PROJECT, REGION, "gone-fr"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert compute.get_forwarding_rule(PROJECT, REGION, "gone-fr") is None
    # a new rule on the same address at once (the old listener may still be closing)
    again = compute.insert_forwarding_rule(
        PROJECT,
        REGION,
        "again-fr",
        NETWORK,
        ip,
        endpoint["deployedModels"][0]["privateEndpoints"]["serviceAttachment"],
    )
    assert operation_error(settle(compute, PROJECT, again)) is None
    time.sleep(0.2)  # the old listener's late stop must not end the new one
    assert (
        psc_session(name, emulator.ca_path)
        .post(url, json={"instances": [{"prompt": "x"}]}, timeout=10)
        .ok
    )
    deadline = time.monotonic() + 10
    while not compute.delete_forwarding_rule(PROJECT, REGION, "again-fr"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not connect_refused(ip, emulator.psc_port):
        assert time.monotonic() < deadline, "the listener outlived its forwarding rule"
        time.sleep(0.02)
    while not compute.delete_address(PROJECT, REGION, "gone-ip"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert compute.get_address(PROJECT, REGION, "gone-ip") is None


def test_undeploying_the_last_model_closes_the_psc_endpoint(emulator: VertexEmulator) -> None:
    endpoint = deploy(emulator, "closing-ep")
    compute = ComputeRest(compute_settings(emulator))
    ip, attachment, _ = connect(emulator, compute, endpoint, "closing", project=CONSUMER)
    undeploy = requests.post(
        f"{emulator.url}/v1beta1/{endpoint['name']}:undeployModel",
        json={"deployedModelId": endpoint["deployedModels"][0]["id"]},
        timeout=10,
    )
    assert undeploy.status_code == 200, undeploy.text
    rule = compute.get_forwarding_rule(CONSUMER, REGION, "closing-fr")
    assert rule is not None and rule["pscConnectionStatus"] == "CLOSED"
    deadline = time.monotonic() + 5
    while not connect_refused(ip, emulator.psc_port):
        assert time.monotonic() < deadline, "the listener outlived the service attachment"
        time.sleep(0.02)
    # a new rule to the attachment that is gone fails in its operation
    settle(compute, CONSUMER, compute.insert_address(CONSUMER, REGION, "late-ip", SUBNET))
    late = compute.insert_forwarding_rule(
        CONSUMER, REGION, "late-fr", NETWORK, "late-ip", attachment
    )
    failure = operation_error(settle(compute, CONSUMER, late))
    assert failure is not None and failure.code == "COMPUTE_NOT_FOUND", failure
    assert compute.get_forwarding_rule(CONSUMER, REGION, "late-fr") is None


def test_a_project_outside_the_allowlist_is_rejected(emulator: VertexEmulator, psc: Psc) -> None:
    compute = ComputeRest(compute_settings(emulator))
    settle(compute, OUTSIDER, compute.insert_address(OUTSIDER, REGION, "out-ip", SUBNET))
    address = compute.get_address(OUTSIDER, REGION, "out-ip")
    assert address is not None
    settle(
        compute,
        OUTSIDER,
        compute.insert_forwarding_rule(
            OUTSIDER, REGION, "out-fr", NETWORK, address["address"], psc.attachment
        ),
    )
    rule = compute.get_forwarding_rule(OUTSIDER, REGION, "out-fr")
    assert rule is not None and rule["pscConnectionStatus"] == "REJECTED"
    assert connect_refused(address["address"], emulator.psc_port)


def test_refusals_come_with_stable_codes(emulator: VertexEmulator) -> None:
    compute = ComputeRest(compute_settings(emulator))

    def fault(status: int) -> None:
        body = {"status": status, "routes": ["compute"]}
        assert requests.post(f"{emulator.url}/emulator/faults", json=body, timeout=10).ok

    fault(403)
    with pytest.raises(DeployError) as denied:
        compute.insert_address(PROJECT, REGION, "denied-ip", SUBNET)
    assert denied.value.code == "COMPUTE_PERMISSION_DENIED" and not denied.value.retryable
    assert "compute.addresses.createInternal" in denied.value.hint
    fault(503)
    with pytest.raises(DeployError) as unavailable:
        compute.get_address(PROJECT, REGION, "denied-ip")
    assert unavailable.value.code == "COMPUTE_UNAVAILABLE" and unavailable.value.retryable
    with pytest.raises(DeployError) as invalid:
        compute.insert_forwarding_rule(
            PROJECT,
            REGION,
            "bad-fr",
            NETWORK,
            "127.0.9.9",  # no address has it
            "projects/x-tp/regions/us-central1/serviceAttachments/y",
        )
    assert invalid.value.code == "COMPUTE_INVALID", invalid.value
    with pytest.raises(DeployError) as region:
        compute.insert_address(
            PROJECT, "europe-west4", "far-ip", f"projects/{PROJECT}/regions/{REGION}/subnetworks/x"
        )
    assert region.value.code == "COMPUTE_INVALID"
    unknown = requests.get(
        f"{emulator.url}/compute/v1/projects/{PROJECT}/regions/{REGION}/operations/operation-1",
        timeout=10,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["errors"][0]["reason"] == "notFound"
    assert json.loads(unknown.text)["error"]["message"] == (
        f"The resource 'projects/{PROJECT}/regions/{REGION}/operations/operation-1' was not found"
    )


def psc_network_settings(emulator: VertexEmulator) -> Any:
    from dataclasses import replace as with_fields

    return with_fields(
        compute_settings(emulator),
        psc_network=NETWORK,
        psc_subnetwork=SUBNET,
        psc_project_allowlist=(CONSUMER,),
    )


def test_psc_network_survives_a_crash_between_the_rule_and_the_record(
    emulator: VertexEmulator,
) -> None:
    """PscNetwork (the PrivateNetwork port) on the emulator: a worker that made the forwarding
    rule and died before recording it is followed by one that finds that rule, so one address
    and one rule exist; disconnect then removes both."""
    from datetime import UTC, datetime

    from modeldrop.adapters.psc_network import PscNetwork
    from modeldrop.domain.deployment import new_deployment, update

    record = new_deployment(BUCKET, "models/psc-echo", "fp", 1, datetime.now(UTC))
    record = update(record, record.created_at, placement={"attempt": 1, "region": REGION})
    endpoint = deploy(emulator, record.vertex_id)
    attachment = endpoint["deployedModels"][0]["privateEndpoints"]["serviceAttachment"]
    settings = psc_network_settings(emulator)

    def state() -> tuple[list[str], list[str]]:
        got = requests.get(f"{emulator.url}/emulator/state", timeout=10).json()
        mine = record.vertex_id
        return (
            [a["name"] for a in got["addresses"] if mine in a["name"]],
            [r["name"] for r in got["forwardingRules"] if mine in r["name"]],
        )

    first = PscNetwork(settings)
    deadline = time.monotonic() + 30
    while not state()[1]:  # the first worker gets as far as making the rule, then "dies"
        assert first.connect(record, endpoint["name"], attachment) is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second, connection = PscNetwork(settings), None
    while connection is None:
        connection = second.connect(record, endpoint["name"], attachment)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [len(names) for names in state()] == [1, 1]
    assert connection.tls_name == dns_name(endpoint["name"], PROJECT)
    answer = psc_session(connection.tls_name, str(emulator.ca_path)).post(
        f"https://{connection.ip}:{emulator.psc_port}/v1beta1/{endpoint['name']}/chat/completions",
        json=CHAT,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    while not second.disconnect(record):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state() == ([], [])
