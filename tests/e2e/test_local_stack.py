"""The event pipeline on the whole local stack: emulators, Vertex emulator, four functions."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from modeldrop.adapters.pubsub_events import parse_event
from tests.fixtures.local_stack import upload, wait_state


def states_of(stack, deployment_id: str) -> list[str]:
    return [m.attributes["state"] for m in stack.events.for_deployment(deployment_id)]


def test_upload_to_deployed_with_ordered_cloudevents(stack, tiny_model):
    upload(stack, tiny_model, "happy")
    status = wait_state(stack, "happy")
    assert status["state"] == "DEPLOYED", status
    assert status["endpoint_dns"] and status["endpoint"].endswith(f"md-{status['id']}-1")
    # as on Google Cloud, the endpoint answers at https://{endpoint_dns}: the emulator's CA verifies
    chat = requests.post(
        f"https://{status['endpoint_dns']}/v1beta1/{status['endpoint']}/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=60,
        verify=stack.connection()["vertex_ca"],
    )
    assert chat.status_code == 200, chat.text
    stack.events.wait_for(lambda _: "DEPLOYED" in states_of(stack, status["id"]), 30)
    states = states_of(stack, status["id"])
    assert states == ["DETECTED", "VALIDATING", "VALIDATED", "DEPLOYING", "DEPLOYED"], states
    for message in stack.events.for_deployment(status["id"]):
        event = parse_event(message)
        assert event["specversion"] == "1.0"
        assert event["type"] == f"dev.modeldrop.deployment.{message.attributes['state'].lower()}"
        assert event["subject"] == status["id"] and event["source"] and event["id"]
        assert (
            event.data["id"] == status["id"] and event.data["state"] == message.attributes["state"]
        )


def test_out_of_order_upload_waits_for_the_last_file(stack, tiny_model):
    names = sorted(p.name for p in tiny_model.iterdir())
    for last in ("config.json", "tokenizer.json"):
        name = f"late-{last.split('.')[0]}"
        order = [n for n in names if n != last] + [last]
        upload(stack, tiny_model, name, order)
        status = wait_state(stack, name, {"VALIDATED", "DEPLOYING", "DEPLOYED", "REJECTED"})
        assert status["state"] != "REJECTED", status["findings"]
        assert status["history"][0]["state"] == "DETECTED"


def test_rejected_folder_notifies_with_findings(stack, tiny_model, tmp_path):
    broken = tmp_path / "gptq"
    shutil.copytree(tiny_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (broken / "config.json").write_text(json.dumps(config))
    upload(stack, broken, "gptq-model")
    status = wait_state(stack, "gptq-model")
    assert status["state"] == "REJECTED" and status["error"]["code"] == "QUANTIZED_CONFIG"
    stack.events.wait_for(lambda _: "REJECTED" in states_of(stack, status["id"]), 30)
    rejection = next(
        parse_event(m)
        for m in stack.events.for_deployment(status["id"])
        if m.attributes["state"] == "REJECTED"
    )
    codes = [f["code"] for f in rejection.data["validation"]["findings"]]
    assert "QUANTIZED_CONFIG" in codes


def test_reupload_with_changed_weights_is_a_new_revision(stack, tiny_model, tmp_path):
    first = wait_state(stack, "happy")
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model, changed)
    upload(stack, changed, "happy", ["model.safetensors"])
    newest = wait_state(stack, "happy", {"VALIDATED", "DEPLOYING", "DEPLOYED"})
    deadline = time.monotonic() + 30
    while newest["id"] == first["id"] and time.monotonic() < deadline:
        time.sleep(0.3)
        newest = wait_state(stack, "happy", {"VALIDATED", "DEPLOYING", "DEPLOYED"})
    assert newest["id"] != first["id"] and newest["revision"] > first["revision"]
    listed = requests.get(f"{stack.urls['api']}/v1/deployments?model=happy", timeout=10).json()
    assert {d["id"] for d in listed["deployments"]} >= {first["id"], newest["id"]}


def storage_event(bucket: str, name: str, generation: int, number: int) -> tuple[dict, bytes]:
    event = CloudEvent(
        {
            "type": "google.cloud.storage.object.v1.finalized",
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "subject": f"objects/{name}",
            "id": f"dup-{number}",
        },
        {"bucket": bucket, "name": name, "generation": str(generation)},
    )
    return to_binary(event)


def test_duplicate_storm_deploys_once_and_notifies_once(stack, tiny_model):
    upload(stack, tiny_model, "storm")
    first = wait_state(stack, "storm", {"VALIDATED", "DEPLOYING", "DEPLOYED"})
    last_object = (
        f"{stack.config.root_prefix}storm/{sorted(p.name for p in tiny_model.iterdir())[-1]}"
    )

    def fire(number: int) -> int:
        headers, body = storage_event(stack.config.bucket, last_object, 1, number)
        return requests.post(
            stack.urls["validate"], data=body, headers=headers, timeout=120
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(fire, range(200)))
    assert set(codes) == {200}, codes
    status = wait_state(stack, "storm")
    assert status["state"] == "DEPLOYED" and status["id"] == first["id"]
    time.sleep(3)  # let any (wrong) duplicate work surface
    vertex_after = requests.get(f"{stack.urls['vertex']}/emulator/state", timeout=10).json()
    ours = [e for e in vertex_after["endpoints"] if e["name"].endswith(f"md-{status['id']}-1")]
    assert len(ours) == 1
    # one Deploy operation for this deployment (other tests' records may deploy meanwhile, so
    # the emulator's global count of deploy calls is not this test's to assert)
    deploys = [
        o
        for o in vertex_after["operations"]
        if o.get("metadata", {}).get("@type", "").endswith("DeployOperationMetadata")
        and o["metadata"].get("modelId", "").startswith(f"md-{status['id']}-")
    ]
    assert len(deploys) == 1, deploys
    assert states_of(stack, status["id"]).count("DEPLOYED") == 1


def test_vertex_outage_at_deploy_is_retried_through_pubsub_redelivery(stack, tiny_model):
    fault = {"status": 503, "count": 2, "routes": ["deploy"]}
    requests.post(
        f"{stack.urls['vertex']}/emulator/faults", json=fault, timeout=10
    ).raise_for_status()
    upload(stack, tiny_model, "outage")
    status = wait_state(stack, "outage")
    assert status["state"] == "DEPLOYED", status
    fired = requests.get(f"{stack.urls['vertex']}/emulator/faults", timeout=10).json()
    assert fired["faults"] == []  # both injected failures were hit, then the deploy went through


def test_status_command_watches_until_deployed(stack, tiny_model, capsys):
    from modeldrop.cli import main

    upload(stack, tiny_model, "watched")
    assert (
        main(["status", "watched", "--watch", "--interval", "0.3", "--api", stack.urls["api"]]) == 0
    )
    out = capsys.readouterr().out
    assert "DEPLOYED" in out and out.strip().endswith("}")
    assert main(["status", "--api", stack.urls["api"]]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(d["model"] == "watched" for d in listed["deployments"])
    assert main(["status", "no-such-model", "--api", stack.urls["api"]]) == 4
