"""The private path on the live stack (echo engine): a private folder deploys to a Private
Service Connect endpoint, modeldrop reserves an address and makes the forwarding rule in the
emulator's Compute Engine, the smoke test and the api's proxy go through the PSC endpoint over
verified TLS, the endpoint's public route refuses, and undeploy removes rule, address and
endpoint. Without network settings a private folder is a validation finding."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from tests.fixtures.local_stack import upload, vertex, wait_state
from tests.fixtures.model_folders import write_valid

PRIVATE = "private_endpoint: {enabled: true, project_allowlist: [client-project]}\n"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def psc_state(stack: Any) -> tuple[list[dict], list[dict]]:
    state = vertex(stack, "GET", "/emulator/state")
    return state["addresses"], state["forwardingRules"]


def test_a_private_deployment_answers_through_its_psc_endpoint(private_stack, tmp_path):
    folder = write_valid(tmp_path / "secret")
    (folder / "modeldrop.yaml").write_text(PRIVATE)
    upload(private_stack, folder, "secret")
    body = wait_state(private_stack, "secret", timeout=120)
    assert body["state"] == "DEPLOYED", body["error"]
    private = body["private_endpoint"]
    assert private["ip"].startswith("127.0.0.") and private["ip"] != "127.0.0.1"
    assert private["tls_name"].endswith(".prediction.p.vertexai.goog")
    assert private["service_attachment"].split("/")[-2] == "serviceAttachments"
    assert body["endpoint_dns"] is None and body["smoke_test"]["passed"] is True
    addresses, rules = psc_state(private_stack)
    assert [r["IPAddress"] for r in rules] == [private["ip"]]
    assert [a["address"] for a in addresses] == [private["ip"]]
    assert rules[0]["pscConnectionStatus"] == "ACCEPTED"

    api = private_stack.urls["api"]
    unary = requests.post(f"{body['links']['chat']}", json=CHAT, timeout=30)
    assert unary.status_code == 200, unary.text
    assert unary.headers["X-Modeldrop-Deployment"] == body["id"]
    named = requests.post(
        f"{api}/v1/chat/completions", json={**CHAT, "model": "secret"}, timeout=30
    )
    assert named.status_code == 200 and named.json()["choices"]
    with requests.post(
        f"{api}/v1/chat/completions",
        json={**CHAT, "model": "secret", "stream": True},
        stream=True,
        timeout=30,
    ) as streamed:
        text = b"".join(streamed.iter_content(chunk_size=None))
    assert streamed.status_code == 200 and text.rstrip().endswith(b"data: [DONE]")
    events = [json.loads(line[6:]) for line in text.split(b"\n") if line[6:7] == b"{"]
    assert any(e["choices"][0]["delta"].get("content") for e in events if e.get("choices"))

    # nothing else reaches the private endpoint's query routes
    refused = requests.post(
        f"{private_stack.urls['vertex']}/v1beta1/{body['endpoint']}/chat/completions",
        json=CHAT,
        timeout=10,
    )
    assert refused.status_code == 403 and "private" in refused.json()["error"]["message"]

    deleted = requests.delete(body["links"]["self"], timeout=30)
    assert deleted.status_code in (200, 202), deleted.text
    deadline = time.monotonic() + 60
    while requests.get(body["links"]["self"], timeout=10).json()["state"] != "UNDEPLOYED":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert psc_state(private_stack) == ([], [])
    endpoints = vertex(private_stack, "GET", "/emulator/state")["endpoints"]
    assert not [e for e in endpoints if body["id"] in e["name"]]


def test_a_private_folder_without_network_settings_is_rejected(placing, capacity_stack):
    placing("private-nowhere", PRIVATE, {})
    body = wait_state(capacity_stack, "private-nowhere", timeout=60)
    assert body["state"] == "REJECTED"
    finding = next(f for f in body["findings"] if f["code"] == "PRIVATE_NETWORK_MISSING")
    assert "MODELDROP_PSC_NETWORK" in finding["message"]
    assert body["error"]["code"] == "PRIVATE_NETWORK_MISSING" and body["error"]["hint"]


def test_a_refused_private_connection_leaves_nothing_behind(private_stack, tmp_path):
    """Compute Engine refusing the PSC endpoint (403 on its first call) ends the deploy FAILED
    with the attempt's address, rule and Vertex AI endpoint deleted: nothing left billing."""
    vertex(private_stack, "POST", "/emulator/faults", {"status": 403, "routes": ["compute"]})
    try:
        folder = write_valid(tmp_path / "refused")
        (folder / "modeldrop.yaml").write_text(PRIVATE)
        upload(private_stack, folder, "refused")
        body = wait_state(private_stack, "refused", timeout=120)
    finally:
        vertex(private_stack, "DELETE", "/emulator/faults")
    assert body["state"] == "FAILED", body
    assert body["error"]["code"] == "COMPUTE_PERMISSION_DENIED"
    assert "permission" in body["error"]["message"] and body["error"]["hint"]
    assert body["attempts"][-1]["outcome"] == "error" and body["endpoint"] is None
    assert psc_state(private_stack) == ([], [])
    endpoints = vertex(private_stack, "GET", "/emulator/state")["endpoints"]
    assert not [e for e in endpoints if body["id"] in e["name"]]
