"""The local Vertex AI emulator against fake-gcs-server, with a real engine serving a tiny model.

What the SDK actually sends (recorded by `Recorder` in test_sdk_deploy_label_undeploy_delete,
google-cloud-aiplatform 2.7, v1beta1, transport="rest"):

- Deploy: POST /v1beta1/projects/P/locations/L:deploy?%24alt=json%3Benum-encoding%3Dint with a
  camelCase body WITHOUT `destination` (it travels in the URL only), enums as integers
  (acceleratorType 11 = NVIDIA_L4) and every false/zero/empty field left out
  (enablePrivateServiceConnect false, spot false, acceptEula false do not appear).
- Operation polling: GET /ui/projects/P/locations/L/operations/ID (no query string).
- get_endpoint: GET /v1beta1/{name}?%24alt=json%3Benum-encoding%3Dint.
- update_endpoint: PATCH /v1beta1/{name}?updateMask=labels&%24alt=... with {"labels": {...}}
  (the name is not repeated in the body).
- undeploy_model: POST /v1beta1/{endpoint}:undeployModel with {"deployedModelId": "..."}.
- delete_endpoint: DELETE /v1beta1/{name} with an empty body.
- Errors map by HTTP status only (google.api_core.exceptions.from_http_status): 400 ->
  BadRequest (also for FAILED_PRECONDITION), 404 -> NotFound, 409 -> Conflict (not
  AlreadyExists), 403 -> Forbidden, 429 -> TooManyRequests, 503 -> ServiceUnavailable.

Queries go where clients send them, https://{dedicatedEndpointDns} (the emulator's TLS port),
verified against the emulator's CA (`verify=` or REQUESTS_CA_BUNDLE).
The engine is `transformers serve` on CPU; tests count tokens and chunks, never compare text.
The request checks and fault mode run with the "echo" engine (no torch needed): they exercise
the control plane only and claim nothing about serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from modeldrop.local.emulators import free_port
from modeldrop.local.vertex import VertexEmulator
from modeldrop.local.vertex.faults import ENV_VAR
from tests.fixtures.vertex import (
    BUCKET,
    MISSING_SERVING,
    SKIP_SERVING,
    FakeClock,
    Recorder,
    deploy_and_wait,
    process_alive,
    upload_folder,
    vertex_settings,
    wait_gone,
)
from tests.fixtures.vertex_requests import sdk_deploy_body

PROJECT, LOCATION = "modeldrop-local", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
DEPLOY_TIMEOUT_S = 180
SSE_DONE = "data: [DONE]"
serving_test = pytest.mark.serving  # needs torch and transformers (skips loudly without)


def rest_deploy(base: str, body: Any) -> requests.Response:
    return requests.post(
        f"{base}/v1beta1/{PARENT}:deploy?$alt=json;enum-encoding=int", json=body, timeout=30
    )


def wait_operation(base: str, name: str, timeout: float = DEPLOY_TIMEOUT_S) -> dict[str, Any]:
    """Poll the operation at the /ui path (as the SDK does) until it is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation = requests.get(f"{base}/ui/{name}", timeout=10).json()
        if operation.get("done"):
            return operation
        time.sleep(0.1)
    raise AssertionError(f"operation {name} not done after {timeout} s")


def sse_events(
    response: requests.Response, start: float | None = None
) -> Iterator[tuple[float, str]]:
    """(seconds since `start`, the perf_counter before the call, data) per SSE event."""
    start = time.perf_counter() if start is None else start
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            yield time.perf_counter() - start, line


# fixtures
@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MISSING_SERVING:
        pytest.skip(SKIP_SERVING)
    from modeldrop.local.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny_uri(gcs: Any, model_folder: Path) -> str:
    return upload_folder(gcs.client, model_folder, "models/tiny-llama")


@pytest.fixture(scope="module")
def broken_uri(gcs: Any, model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model with its weights cut to 1000 bytes: listed fine, cannot load."""
    broken = tmp_path_factory.mktemp("broken") / "broken"
    shutil.copytree(model_folder, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return upload_folder(gcs.client, broken, "models/broken")


@pytest.fixture(scope="module")
def serving(gcs: Any, tiny_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The emulator with the transformers engine; checks that stopping it leaves no engine."""
    cache = tmp_path_factory.mktemp("vertex-cache")
    emulator = VertexEmulator(engine="transformers", cache_dir=cache, faults="", ca_dir=cache)
    emulator.start()
    try:
        yield emulator
    finally:
        pids = [e["pid"] for e in emulator.control.engines() if e.get("pid")]
        emulator.stop()
        assert all(wait_gone(pid) for pid in pids), f"engines left running: {pids}"


@dataclass
class Deployed:
    endpoint: str  # resource name
    query_base: str  # https://{dedicatedEndpointDns}/v1beta1/{endpoint}
    ca: str  # the CA that verifies it
    model_id: str
    deployed_id: str
    pid: int
    seconds: float  # deploy call to operation done


@pytest.fixture(scope="module")
def deployed(serving: Any, tiny_uri: str) -> Iterator[Deployed]:
    """The tiny model deployed through raw REST (the SDK's JSON); undeployed and deleted after,
    through REST too, checking that its engine process is gone."""
    started = time.perf_counter()
    response = rest_deploy(serving.url, sdk_deploy_body(tiny_uri, "tiny-ep", "tiny-model"))
    assert response.status_code == 200, response.text
    operation = wait_operation(serving.url, response.json()["name"])
    seconds = time.perf_counter() - started
    assert "error" not in operation, operation
    endpoint = requests.get(f"{serving.url}/v1beta1/{PARENT}/endpoints/tiny-ep", timeout=10).json()
    pid = next(e["pid"] for e in serving.control.engines() if e["endpoint"] == endpoint["name"])
    yield Deployed(
        endpoint=endpoint["name"],
        query_base=f"https://{endpoint['dedicatedEndpointDns']}/v1beta1/{endpoint['name']}",
        ca=str(serving.ca_path),
        model_id="tiny-model",
        deployed_id=endpoint["deployedModels"][0]["id"],
        pid=pid,
        seconds=seconds,
    )
    undeploy = requests.post(
        f"{serving.url}/v1beta1/{endpoint['name']}:undeployModel",
        json={"deployedModelId": endpoint["deployedModels"][0]["id"]},
        timeout=30,
    )
    assert undeploy.status_code == 200, undeploy.text
    assert "error" not in wait_operation(serving.url, undeploy.json()["name"], 60)
    assert wait_gone(pid, 1), f"engine {pid} still running after undeploy"
    delete = requests.delete(f"{serving.url}/v1beta1/{endpoint['name']}", timeout=30)
    assert delete.status_code == 200 and delete.json()["done"], delete.text


@pytest.fixture(scope="module")
def echo(gcs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An emulator with the echo engine (control-plane checks, faults, proxy concurrency)."""
    folder = tmp_path_factory.mktemp("echo") / "echo-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    upload_folder(gcs.client, folder, "models/echo-model")
    cache = folder.parent / "cache"
    with VertexEmulator(engine="echo", cache_dir=cache, faults="", ca_dir=cache) as emulator:
        yield emulator


ECHO_URI = f"gs://{BUCKET}/models/echo-model"


def sdk_clients(url: str) -> tuple[Any, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1beta1 as v1beta1

    options = {"api_endpoint": url}
    credentials = AnonymousCredentials()
    return (
        v1beta1.ModelGardenServiceClient(
            transport="rest", client_options=options, credentials=credentials
        ),
        v1beta1.EndpointServiceClient(
            transport="rest", client_options=options, credentials=credentials
        ),
    )


# deploy through REST: operation, endpoint, dedicated DNS
@serving_test
def test_rest_deploy_reaches_ready_with_the_dedicated_endpoint(
    serving: Any, deployed: Deployed
) -> None:
    endpoint = requests.get(f"{serving.url}/v1beta1/{deployed.endpoint}", timeout=10).json()
    assert endpoint["dedicatedEndpointEnabled"] is True
    assert endpoint["dedicatedEndpointDns"] == serving.dedicated_dns != serving.host
    assert endpoint["labels"] == {} and endpoint["trafficSplit"] == {deployed.deployed_id: 100}
    model = endpoint["deployedModels"][0]
    assert model["model"] == f"{PARENT}/models/tiny-model"
    assert model["dedicatedResources"]["machineSpec"] == {
        "machineType": "g2-standard-12",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 1,
    }
    assert model["status"]["availableReplicaCount"] == 1
    operations = serving.registry.snapshot()["operations"]
    deploy_op = next(
        o for o in operations if o.get("response", {}).get("endpoint") == endpoint["name"]
    )
    for prefix in ("ui", "v1beta1"):  # the SDK polls /ui; both answer the same
        assert requests.get(f"{serving.url}/{prefix}/{deploy_op['name']}").json() == deploy_op
    assert deploy_op["response"]["@type"].endswith("v1beta1.DeployResponse")
    assert deploy_op["metadata"]["@type"].endswith("v1beta1.DeployOperationMetadata")
    print(f"\ndeploy to ready: {deployed.seconds:.2f} s (tiny llama, transformers serve, CPU)")


@serving_test
def test_second_deploy_with_the_same_endpoint_id_conflicts(
    serving: Any, deployed: Deployed, tiny_uri: str
) -> None:
    response = rest_deploy(serving.url, sdk_deploy_body(tiny_uri, "tiny-ep", "another-model"))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["status"] == "ALREADY_EXISTS" and deployed.endpoint in error["message"]


@serving_test
def test_delete_with_a_deployed_model_and_unknown_undeploy_are_refused(
    serving: Any, deployed: Deployed
) -> None:
    delete = requests.delete(f"{serving.url}/v1beta1/{deployed.endpoint}", timeout=10)
    assert delete.status_code == 400 and delete.json()["error"]["status"] == "FAILED_PRECONDITION"
    undeploy = requests.post(
        f"{serving.url}/v1beta1/{deployed.endpoint}:undeployModel",
        json={"deployedModelId": "42"},
        timeout=10,
    )
    assert (
        undeploy.status_code == 404 and deployed.deployed_id in undeploy.json()["error"]["message"]
    )
    unknown = requests.get(f"{serving.url}/v1beta1/{PARENT}/endpoints/nope", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"


# queries on the dedicated endpoint
@serving_test
def test_chat_completion_unary(deployed: Deployed) -> None:
    body = {
        "model": deployed.model_id,
        "temperature": 0,
        "top_p": 1,
        "max_tokens": 12,
        "ignore_eos": True,  # vLLM-only: translated for transformers serve, not a 422
        "messages": [{"role": "user", "content": "How to tell the time by looking at the sky?"}],
    }
    response = requests.post(
        f"{deployed.query_base}/chat/completions", json=body, timeout=60, verify=deployed.ca
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == deployed.model_id
    assert answer["usage"]["completion_tokens"] == 12
    assert isinstance(answer["choices"][0]["message"]["content"], str)


@serving_test
def test_chat_completion_streams_chunk_by_chunk(deployed: Deployed) -> None:
    body = {
        "model": deployed.model_id,
        "stream": True,
        "temperature": 0,
        "max_tokens": 48,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "How to tell the time by looking at the sky?"}],
    }
    url = f"{deployed.query_base}/chat/completions"
    start = time.perf_counter()
    with requests.post(url, json=body, stream=True, timeout=60, verify=deployed.ca) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = list(sse_events(response, start))
    assert events[-1][1] == SSE_DONE  # added where transformers serve leaves it out
    chunks = [json.loads(data[len("data: ") :]) for _, data in events[:-1]]
    content = [
        (t, c)
        for (t, _), c in zip(events, chunks, strict=False)
        if c["choices"][0]["delta"].get("content")
    ]
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 48
    assert 1 < len(content) <= 48 and all(c["model"] == deployed.model_id for c in chunks)
    first_token, total = content[0][0], events[-1][0]
    assert first_token < total / 2, (
        f"first token at {first_token:.3f} s of {total:.3f} s: buffered?"
    )
    seen = len(content)
    print(f"\nfirst token {first_token * 1e3:.1f} ms of {total * 1e3:.1f} ms, {seen} chunks")


@serving_test
def test_predict_answers_in_model_garden_format(deployed: Deployed) -> None:
    instance = {"prompt": "How to tell the time?", "temperature": 0, "top_p": 1, "max_tokens": 6}
    body = {"instances": [{**instance, "ignore_eos": True}, {**instance, "raw_response": True}]}
    response = requests.post(
        f"{deployed.query_base}:predict", json=body, timeout=60, verify=deployed.ca
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["deployedModelId"] == deployed.deployed_id
    assert answer["model"] == f"{PARENT}/models/tiny-model"
    formatted, raw = answer["predictions"]
    assert formatted.startswith("Prompt:\nHow to tell the time?\nOutput:\n")
    assert not raw.startswith("Prompt:")


@serving_test
def test_stream_raw_predict_passes_the_completion_stream(deployed: Deployed) -> None:
    instance = {"prompt": "How", "temperature": 0, "max_tokens": 10, "ignore_eos": True}
    body = {"instances": [{**instance, "stream": True}]}
    url = f"{deployed.query_base}:streamRawPredict"
    with requests.post(url, json=body, stream=True, timeout=60, verify=deployed.ca) as response:
        assert response.status_code == 200
        events = [data for _, data in sse_events(response)]
    assert events[-1] == SSE_DONE
    chunks = [json.loads(data[len("data: ") :]) for data in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 10


@serving_test
def test_concurrent_streams_all_finish(deployed: Deployed) -> None:
    body = {
        "stream": True,
        "temperature": 0,
        "max_tokens": 8,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    results: list[int] = []

    def one() -> None:
        url = f"{deployed.query_base}/chat/completions"
        with requests.post(url, json=body, stream=True, timeout=120, verify=deployed.ca) as r:
            events = [data for _, data in sse_events(r)]
        results.append(json.loads(events[-2][len("data: ") :])["usage"]["completion_tokens"])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [8] * 4


@serving_test
def test_queries_to_unknown_or_undeployed_endpoints(serving: Any, deployed: Deployed) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    unknown = requests.post(
        f"{serving.url}/v1beta1/{PARENT}/endpoints/nope/chat/completions", json=body, timeout=10
    )
    assert unknown.status_code == 404
    bad = requests.post(
        f"{deployed.query_base}:predict", json={"instances": [{}]}, timeout=10, verify=deployed.ca
    )
    assert bad.status_code == 400 and '"prompt"' in bad.json()["error"]["message"]


# a model that cannot load
@serving_test
def test_model_that_cannot_load_fails_its_operation_only(
    serving: Any, deployed: Deployed, broken_uri: str
) -> None:
    response = rest_deploy(serving.url, sdk_deploy_body(broken_uri, "broken-ep", "broken-model"))
    assert response.status_code == 200, response.text
    endpoint = f"{PARENT}/endpoints/broken-ep"
    early = requests.post(
        f"{serving.url}/v1beta1/{endpoint}/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert early.status_code == 400 and early.json()["error"]["status"] == "FAILED_PRECONDITION"
    operation = wait_operation(serving.url, response.json()["name"])
    assert operation["error"]["code"] == 3
    assert "SafetensorError" in operation["error"]["message"], operation["error"]["message"]
    assert "response" not in operation
    got = requests.get(f"{serving.url}/v1beta1/{endpoint}", timeout=10).json()
    assert got["deployedModels"] == []
    assert all(e["endpoint"] != endpoint for e in serving.control.engines())
    # the other model never noticed
    ok = requests.post(
        f"{deployed.query_base}/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0},
        timeout=60,
        verify=deployed.ca,
    )
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3
    deleted = requests.delete(f"{serving.url}/v1beta1/{endpoint}", timeout=10)
    assert deleted.status_code == 200 and deleted.json()["done"] is True


# the real SDK, recorded
@serving_test
def test_sdk_deploy_label_undeploy_delete(serving: Any, tiny_uri: str) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1beta1 as v1beta1
    from google.protobuf import field_mask_pb2

    recorder = Recorder(serving.app.wsgi_app)
    serving.app.wsgi_app = recorder
    try:
        garden, endpoints = sdk_clients(serving.url)
        request = v1beta1.DeployRequest(
            destination=PARENT,
            custom_model=v1beta1.DeployRequest.CustomModel(gcs_uri=tiny_uri),
            model_config=v1beta1.DeployRequest.ModelConfig(
                model_display_name="sdk-model", model_user_id="sdk-model", accept_eula=False
            ),
            endpoint_config=v1beta1.DeployRequest.EndpointConfig(
                endpoint_display_name="sdk-ep",
                endpoint_user_id="sdk-ep",
                dedicated_endpoint_enabled=True,
            ),
            deploy_config=v1beta1.DeployRequest.DeployConfig(
                dedicated_resources=v1beta1.DedicatedResources(
                    machine_spec=v1beta1.MachineSpec(
                        machine_type="g2-standard-12",
                        accelerator_type=v1beta1.AcceleratorType.NVIDIA_L4,
                        accelerator_count=1,
                    ),
                    min_replica_count=1,
                    max_replica_count=1,
                    spot=False,
                )
            ),
        )
        result = garden.deploy(request=request).result(timeout=DEPLOY_TIMEOUT_S)
        assert result.endpoint == f"{PARENT}/endpoints/sdk-ep"
        assert result.model == f"{PARENT}/models/sdk-model"

        endpoint = endpoints.get_endpoint(name=result.endpoint)
        assert endpoint.dedicated_endpoint_dns == serving.dedicated_dns
        machine = endpoint.deployed_models[0].dedicated_resources.machine_spec
        assert machine.accelerator_type == v1beta1.AcceleratorType.NVIDIA_L4
        labelled = endpoints.update_endpoint(
            endpoint=v1beta1.Endpoint(name=result.endpoint, labels={"modeldrop-id": "abc"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
        )
        assert dict(labelled.labels) == {"modeldrop-id": "abc"}

        # clients follow dedicatedEndpointDns to query, as on Google Cloud
        chat = requests.post(
            f"https://{endpoint.dedicated_endpoint_dns}/v1beta1/{result.endpoint}/chat/completions",
            json={
                "model": "sdk-model",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
                "temperature": 0,
            },
            timeout=60,
            verify=serving.ca_path,
        )
        assert chat.status_code == 200 and chat.json()["model"] == "sdk-model"

        pid = next(e["pid"] for e in serving.control.engines() if e["endpoint"] == result.endpoint)
        deployed_id = endpoint.deployed_models[0].id
        endpoints.undeploy_model(endpoint=result.endpoint, deployed_model_id=deployed_id).result(
            timeout=60
        )
        assert wait_gone(pid, 1), f"engine {pid} still running after undeploy"
        endpoints.delete_endpoint(name=result.endpoint).result(timeout=60)
        with pytest.raises(exceptions.NotFound):
            endpoints.get_endpoint(name=result.endpoint)
        with pytest.raises(exceptions.Conflict, match="sdk-model already exists"):
            garden.deploy(request=request)  # the model outlives its endpoint, as on Vertex AI
    finally:
        serving.app.wsgi_app = recorder.app

    calls = recorder.calls
    method, path, query, body = calls[0]
    assert (method, path, query) == (
        "POST",
        f"/v1beta1/{PARENT}:deploy",
        "%24alt=json%3Benum-encoding%3Dint",
    )
    expected = sdk_deploy_body(tiny_uri, "sdk-ep", "sdk-model")
    expected["modelConfig"]["modelDisplayName"] = "sdk-model"
    assert json.loads(body) == expected  # no destination, enum as 11, no false fields
    polls = [p for m, p, _, _ in calls if m == "GET" and "/operations/" in p]
    assert polls and all(p.startswith(f"/ui/{PARENT}/") for p in polls)
    patch = next(c for c in calls if c[0] == "PATCH")
    assert patch[2].startswith("updateMask=labels&") and json.loads(patch[3]) == {
        "labels": {"modeldrop-id": "abc"}
    }
    undeploy = next(c for c in calls if c[1].endswith(":undeployModel"))
    assert json.loads(undeploy[3]) == {"deployedModelId": deployed_id}
    assert next(c for c in calls if c[0] == "DELETE")[3] == b""


# request checks through HTTP and the SDK (echo engine: control plane only)
@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"destination": "projects/x/locations/us-central1"}, 400, "does not match"),
        (
            {
                "deployConfig": {
                    "dedicatedResources": {
                        "machineSpec": {
                            "machineType": "n1-highmem-2",
                            "acceleratorType": 11,
                            "acceleratorCount": 1,
                        },
                        "minReplicaCount": 1,
                    }
                }
            },
            400,
            "not supported",
        ),
        (
            {
                "deployConfig": {
                    "dedicatedResources": {
                        "machineSpec": {
                            "machineType": "g2-standard-12",
                            "acceleratorType": 99,
                            "acceleratorCount": 1,
                        },
                        "minReplicaCount": 1,
                    }
                }
            },
            400,
            "AcceleratorType), 99",
        ),
        (
            {
                "deployConfig": {
                    "dedicatedResources": {
                        "machineSpec": {
                            "machineType": "g2-standard-12",
                            "acceleratorType": 11,
                            "acceleratorCount": 1,
                        },
                        "minReplicaCount": 2,
                        "maxReplicaCount": 1,
                    }
                }
            },
            400,
            "below min_replica_count",
        ),
        (
            {"customModel": {"gcsUri": "gs://no-such-bucket-emu/models/x"}},
            404,
            "Bucket no-such-bucket-emu not found",
        ),
        ({"customModel": {"gcsUri": f"gs://{BUCKET}/models/nothing-here"}}, 400, "holds no files"),
        ({"endpointConfig": {"endpointUserId": "Bad_Id"}}, 400, "endpoint_user_id 'Bad_Id'"),
    ],
)
def test_bad_deploy_requests_are_refused(
    echo: Any, change: dict[str, Any], status: int, needle: str
) -> None:
    response = rest_deploy(echo.url, {**sdk_deploy_body(ECHO_URI, "x-ep", "x-model"), **change})
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    assert "x-ep" not in json.dumps(echo.registry.snapshot()["endpoints"])  # nothing created


def test_sdk_sees_the_matching_exception_classes(echo: Any) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1beta1 as v1beta1

    garden, _ = sdk_clients(echo.url)
    request = v1beta1.DeployRequest(
        destination=PARENT,
        custom_model=v1beta1.DeployRequest.CustomModel(gcs_uri=f"gs://{BUCKET}/models/missing"),
    )
    with pytest.raises(exceptions.BadRequest, match="holds no files"):
        garden.deploy(request=request)
    request.custom_model.gcs_uri = "gs://no-such-bucket-emu/x"
    with pytest.raises(exceptions.NotFound):
        garden.deploy(request=request)
    request.custom_model.gcs_uri = ECHO_URI
    request.endpoint_config.endpoint_user_id = "twice-ep"
    garden.deploy(request=request).result(timeout=30)
    with pytest.raises(exceptions.Conflict, match=f"{PARENT}/endpoints/twice-ep"):
        garden.deploy(request=request)


def test_echo_engine_answers_through_the_proxy(echo: Any) -> None:
    response = rest_deploy(echo.url, sdk_deploy_body(ECHO_URI, "echo-ep", "echo-model"))
    assert "error" not in wait_operation(echo.url, response.json()["name"], 30)
    base = f"https://{echo.dedicated_dns}/v1beta1/{PARENT}/endpoints/echo-ep"
    body = {"stream": True, "max_tokens": 5, "messages": [{"role": "user", "content": "a b"}]}
    counts: list[int] = []

    def one() -> None:
        url = f"{base}/chat/completions"
        with requests.post(url, json=body, stream=True, timeout=30, verify=echo.ca_path) as r:
            counts.append(sum(1 for _ in sse_events(r)))

    threads = [threading.Thread(target=one) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counts == [7] * 32  # 5 tokens, the final usage chunk, [DONE]
    predict = requests.post(
        f"{base}:predict", json={"instances": [{"prompt": "x y"}]}, timeout=10, verify=echo.ca_path
    )
    assert predict.json()["predictions"][0].startswith("Prompt:\nx y\nOutput:\n")


# the serving log: Cloud Logging's entries:list on the control-plane port
def list_logs(base: str, query: str, **fields: Any) -> requests.Response:
    body = {"resourceNames": [f"projects/{PROJECT}"], "filter": query, **fields}
    return requests.post(f"{base}/v2/entries:list", json=body, timeout=10)


def endpoint_filter(endpoint_id: str, deployed_id: str | None = None) -> str:
    query = (
        'resource.type="aiplatform.googleapis.com/Endpoint" AND '
        f'resource.labels.endpoint_id="{endpoint_id}" AND resource.labels.location="{LOCATION}"'
    )
    return query + (f' AND labels.deployed_model_id="{deployed_id}"' if deployed_id else "")


def test_an_echo_endpoints_log_has_its_start_and_each_request(echo: Any) -> None:
    response = rest_deploy(echo.url, sdk_deploy_body(ECHO_URI, "log-ep", "log-model"))
    assert "error" not in wait_operation(echo.url, response.json()["name"], 30)
    endpoint = requests.get(f"{echo.url}/v1beta1/{PARENT}/endpoints/log-ep", timeout=10).json()
    deployed_id = endpoint["deployedModels"][0]["id"]
    base = f"https://{echo.dedicated_dns}/v1beta1/{PARENT}/endpoints/log-ep"
    for words in ("a b", "c d e"):
        chat = requests.post(
            f"{base}/chat/completions",
            json={"messages": [{"role": "user", "content": words}], "max_tokens": 2},
            timeout=10,
            verify=echo.ca_path,
        )
        assert chat.status_code == 200
    answer = list_logs(
        echo.url, endpoint_filter("log-ep", deployed_id), orderBy="timestamp desc"
    ).json()
    entries = answer["entries"]
    texts = [e["textPayload"] for e in entries]
    assert "echo engine serving log-model" in texts[-2] and "starting" in texts[-1]
    assert all('"POST /v1/chat/completions HTTP/1.1" 200' in t for t in texts[:2])  # newest
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    newest = entries[0]
    assert newest["severity"] == "INFO"
    assert newest["resource"] == {
        "type": "aiplatform.googleapis.com/Endpoint",
        "labels": {"resource_container": PROJECT, "location": LOCATION, "endpoint_id": "log-ep"},
    }
    assert newest["labels"] == {"deployed_model_id": deployed_id}
    page = list_logs(echo.url, endpoint_filter("log-ep"), orderBy="timestamp desc", pageSize=1)
    assert [e["textPayload"] for e in page.json()["entries"]] == texts[:1]
    assert page.json()["nextPageToken"]
    assert list_logs(echo.url, endpoint_filter("log-ep", "0")).json() == {"entries": []}


def test_a_failed_engines_log_stays_readable(echo: Any, gcs: Any, tmp_path: Path) -> None:
    folder = tmp_path / "echo-broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    uri = upload_folder(gcs.client, folder, "models/echo-broken")
    response = rest_deploy(echo.url, sdk_deploy_body(uri, "broken-log-ep", "broken-log-model"))
    operation = wait_operation(echo.url, response.json()["name"], 30)
    assert operation["error"]["code"] == 3 and "config.json" in operation["error"]["message"]
    answer = list_logs(echo.url, endpoint_filter("broken-log-ep"), orderBy="timestamp desc")
    entries = answer.json()["entries"]
    assert entries[0]["severity"] == "INFO" and "stopped" in entries[0]["textPayload"]
    error = next(e for e in entries if e["severity"] == "ERROR")
    assert "config.json is unusable" in error["textPayload"]
    assert "labels" not in error  # the deploy never got a deployed model


def test_the_log_route_refuses_what_it_does_not_implement(echo: Any) -> None:
    bad = list_logs(echo.url, 'jsonPayload.message:"x"')
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    too_big = list_logs(echo.url, "", pageSize=1001)
    assert too_big.status_code == 400
    nowhere = requests.post(f"{echo.url}/v2/entries:list", json={"filter": ""}, timeout=10)
    assert nowhere.status_code == 400 and "resourceNames" in nowhere.json()["error"]["message"]
    # (a "logs" fault, e.g. 403 naming logging.logEntries.list: test_vertex_adapter)


def test_the_sdk_sample_predicts_over_tls(echo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's document's sample against the emulator, REQUESTS_CA_BUNDLE naming its CA.

    google-cloud-aiplatform 2.7 (CustomModel is in vertexai.preview.model_garden there):
    vertexai.init(api_endpoint=<http control plane>, api_transport="rest") and
    CustomModel(gcs_uri).deploy() call :deploy and poll /ui/.../operations/ID; then
    Endpoint.predict(..., use_dedicated_endpoint=True) GETs the endpoint for its
    dedicatedEndpointDns and POSTs https://{dedicatedEndpointDns}/v1/{endpoint}:predict through
    google-auth's AuthorizedSession (requests), which verifies the emulator's certificate
    against REQUESTS_CA_BUNDLE. Without the CA the same call fails verification.
    """
    import vertexai
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from vertexai.preview import model_garden

    config = initializer.global_config  # vertexai.init sets it: undo that after the test
    monkeypatch.setattr(config, "__dict__", dict(vars(config)))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(echo.ca_path))
    recorder = Recorder(echo.app.wsgi_app)
    monkeypatch.setattr(echo.app, "wsgi_app", recorder)
    vertexai.init(
        project=PROJECT,
        location=LOCATION,
        api_endpoint=echo.url,
        api_transport="rest",
        credentials=AnonymousCredentials(),
    )
    endpoint = model_garden.CustomModel(gcs_uri=ECHO_URI).deploy(
        machine_type="g2-standard-12", accelerator_type="NVIDIA_L4", accelerator_count=1
    )
    answer = endpoint.predict(
        instances=[{"prompt": "a b", "max_tokens": 3}], use_dedicated_endpoint=True
    )
    assert endpoint.dedicated_endpoint_dns == echo.dedicated_dns
    assert ("POST", f"/v1/{endpoint.resource_name}:predict") in [c[:2] for c in recorder.calls]
    assert answer.predictions == ["Prompt:\na b\nOutput:\na b a"]
    assert answer.deployed_model_id and answer.model_resource_name.startswith(f"{PARENT}/models/")

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")  # the system's CAs only
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        endpoint.predict(instances=[{"prompt": "a b"}], use_dedicated_endpoint=True)


# fault mode
def test_faults_from_the_environment(
    gcs: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from google.api_core import exceptions

    monkeypatch.setenv(ENV_VAR, "503x2,429x1")
    with VertexEmulator(engine="echo", cache_dir=tmp_path, ca_dir=tmp_path) as emulator:
        _, endpoints = sdk_clients(emulator.url)
        name = f"{PARENT}/endpoints/missing"
        with pytest.raises(exceptions.ServiceUnavailable):
            endpoints.get_endpoint(name=name)
        url = f"{emulator.url}/v1beta1/{name}"
        second, third, fourth = (requests.get(url, timeout=10) for _ in range(3))
        assert second.status_code == 503 and second.json()["error"]["status"] == "UNAVAILABLE"
        assert third.status_code == 429 and "Quota exceeded" in third.json()["error"]["message"]
        assert fourth.status_code == 404  # faults used up: the real answer again


def test_faults_from_the_admin_route(echo: Any) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1beta1 as v1beta1

    admin = f"{echo.url}/emulator/faults"
    garden, endpoints = sdk_clients(echo.url)
    body = sdk_deploy_body(ECHO_URI, "fault-ep", "fault-model")
    assert requests.post(admin, json={"status": 403, "routes": ["deploy"]}).status_code == 200
    with pytest.raises(exceptions.NotFound):  # not a deploy: untouched
        endpoints.get_endpoint(name=f"{PARENT}/endpoints/fault-ep")
    forbidden = rest_deploy(echo.url, body)
    assert forbidden.status_code == 403
    assert "aiplatform.endpoints.deploy" in forbidden.json()["error"]["message"]

    requests.post(
        admin, json={"faults": [{"status": 429, "routes": ["deploy"]}, {"status": 504, "count": 2}]}
    )
    quota = rest_deploy(echo.url, body).json()["error"]
    assert "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus" in quota["message"]
    for _ in range(2):
        with pytest.raises(exceptions.GatewayTimeout):
            endpoints.get_endpoint(name=f"{PARENT}/endpoints/fault-ep")

    # the SDK's operation polling retries 503 by itself: the deploy still completes
    requests.post(admin, json={"status": 503, "count": 2, "routes": ["operations"]})
    request = v1beta1.DeployRequest(
        destination=PARENT,
        custom_model=v1beta1.DeployRequest.CustomModel(gcs_uri=ECHO_URI),
        endpoint_config=v1beta1.DeployRequest.EndpointConfig(endpoint_user_id="fault-ep"),
    )
    assert garden.deploy(request=request).result(timeout=30).endpoint.endswith("/fault-ep")
    assert requests.get(admin).json() == {"faults": [], "fired": 6}  # 403, 429, 504x2, 503x2

    requests.post(admin, json={"status": 503, "count": 5, "routes": ["query"]})
    query = requests.post(
        f"{echo.url}/v1beta1/{PARENT}/endpoints/fault-ep/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert query.status_code == 503
    assert requests.delete(admin).json() == {"faults": []}
    assert requests.get(admin).json()["faults"] == []
    bad = requests.post(admin, json={"status": 418})
    assert bad.status_code == 400 and "not supported" in bad.json()["error"]["message"]


def test_state_lists_resources_engines_and_counts_deploy_calls(echo: Any) -> None:
    before = requests.get(f"{echo.url}/emulator/state", timeout=10).json()
    assert {"endpoints", "operations", "models", "engines", "faults"} <= before.keys()
    assert before["engine_kind"] == "echo"
    rest_deploy(echo.url, {"customModel": {}})  # refused, but still a Deploy call
    after = requests.get(f"{echo.url}/emulator/state", timeout=10).json()
    assert after["deploy_calls"] == before["deploy_calls"] + 1 == after["calls"]["deploy"]


# capacity: quota refusals, stockouts, RecommendSpec
CAPACITY_REGION = "europe-west4"  # other tests deploy in LOCATION, which the table leaves alone


@pytest.fixture
def capacity(echo: Any) -> Iterator[str]:
    """The admin route for the echo emulator's capacity table, emptied again after the test."""
    url = f"{echo.url}/emulator/capacity"
    yield url
    requests.post(url, json={}, timeout=10)


def test_capacity_refuses_beyond_quota_and_stocks_out_beyond_stock(
    echo: Any, capacity: str
) -> None:
    from google.api_core import exceptions

    parent = f"projects/{PROJECT}/locations/{CAPACITY_REGION}"

    def deploy(name: str) -> requests.Response:
        return requests.post(
            f"{echo.url}/v1beta1/{parent}:deploy?$alt=json;enum-encoding=int",
            json=sdk_deploy_body(ECHO_URI, name, name),
            timeout=30,
        )

    table = {CAPACITY_REGION: {"NVIDIA_L4": {"quota": 1, "stock": 1}}}
    assert requests.post(capacity, json=table, timeout=10).json()["capacity"] == table
    first = deploy("cap-a")
    assert "error" not in wait_operation(echo.url, first.json()["name"], 30)
    in_use = requests.get(capacity, timeout=10).json()["in_use"]
    assert in_use[CAPACITY_REGION] == {"NVIDIA_L4": 1}  # other tests' GPUs count in LOCATION

    refused = deploy("cap-b")
    error = exceptions.from_http_response(refused)
    assert isinstance(error, exceptions.TooManyRequests)
    assert "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus" in error.message
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "cap-b" not in json.dumps(echo.registry.snapshot()["endpoints"])  # nothing created

    table[CAPACITY_REGION]["NVIDIA_L4"]["quota"] = 2  # quota left, but no stock
    requests.post(capacity, json=table, timeout=10)
    accepted = deploy("cap-b")
    assert accepted.status_code == 200, accepted.text
    operation = wait_operation(echo.url, accepted.json()["name"], 30)
    assert operation["error"] == {
        "code": 8,
        "message": f"Resources are insufficient in region: {CAPACITY_REGION}.",
    }
    assert requests.delete(f"{echo.url}/v1beta1/{parent}/endpoints/cap-b", timeout=10).ok

    endpoint = requests.get(f"{echo.url}/v1beta1/{parent}/endpoints/cap-a", timeout=10).json()
    undeploy = requests.post(
        f"{echo.url}/v1beta1/{endpoint['name']}:undeployModel",
        json={"deployedModelId": endpoint["deployedModels"][0]["id"]},
        timeout=10,
    )
    assert "error" not in wait_operation(echo.url, undeploy.json()["name"], 30)
    state = requests.get(f"{echo.url}/emulator/state", timeout=10).json()
    assert state["capacity"] == table and CAPACITY_REGION not in state["capacity_in_use"]
    assert deploy("cap-c").status_code == 200  # the freed GPU is in stock again

    bad = requests.post(capacity, json={CAPACITY_REGION: {"NVIDIA_L4": {"quota": -1}}})
    assert bad.status_code == 400 and "whole number" in bad.json()["error"]["message"]


def test_sdk_recommend_spec_answers_from_the_table(echo: Any, capacity: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1beta1 as v1beta1

    requests.post(capacity, json={CAPACITY_REGION: {"NVIDIA_L4": {"quota": 0}}}, timeout=10)
    client = v1beta1.ModelServiceClient(
        transport="rest",
        client_options={"api_endpoint": echo.url},
        credentials=AnonymousCredentials(),
    )
    response = client.recommend_spec(
        request=v1beta1.RecommendSpecRequest(
            parent=PARENT, gcs_uri=ECHO_URI, check_machine_availability=True, check_user_quota=True
        )
    )
    state = v1beta1.RecommendSpecResponse.Recommendation.QuotaState
    seen = {
        (r.region, r.spec.machine_spec.machine_type): r.user_quota_state
        for r in response.recommendations
    }
    assert response.recommendations[0].region == LOCATION
    assert seen[(LOCATION, "g2-standard-12")] == state.QUOTA_STATE_USER_HAS_QUOTA
    assert seen[(CAPACITY_REGION, "g2-standard-12")] == state.QUOTA_STATE_NO_USER_QUOTA
    assert seen[(CAPACITY_REGION, "a3-highgpu-1g")] == state.QUOTA_STATE_USER_HAS_QUOTA


SPOT_REGION = "asia-east1"  # a region of its own: the GPUs held here stay out of the others


def test_spot_stockouts_and_an_injected_stockout_fail_in_the_operation(
    echo: Any, capacity: str
) -> None:
    """A Spot deploy beyond spot_stock and a deploy hit by a "stockout" fault are accepted, then
    their operations fail; RecommendSpec, which cannot foresee the fault, offers the machine."""
    parent = f"projects/{PROJECT}/locations/{SPOT_REGION}"
    faults = f"{echo.url}/emulator/faults"

    def deploy(name: str, spot: bool = False) -> dict[str, Any]:
        body = sdk_deploy_body(ECHO_URI, name, name)
        if spot:
            body["deployConfig"]["dedicatedResources"]["spot"] = True
        response = requests.post(
            f"{echo.url}/v1beta1/{parent}:deploy?$alt=json;enum-encoding=int",
            json=body,
            timeout=30,
        )
        assert response.status_code == 200, response.text  # accepted either way
        return wait_operation(echo.url, response.json()["name"], 30)

    def in_use() -> dict[str, int]:
        return requests.get(capacity, timeout=10).json()["in_use"].get(SPOT_REGION, {})

    table = {SPOT_REGION: {"NVIDIA_L4": {"quota": 4, "stock": 4, "spot_stock": 1}}}
    assert requests.post(capacity, json=table, timeout=10).json()["capacity"] == table
    held: list[str] = []
    try:
        assert "error" not in deploy("spot-a", spot=True)
        held.append("spot-a")
        assert in_use() == {"NVIDIA_L4": 1}
        error = deploy("spot-b", spot=True)["error"]
        assert error["code"] == 8  # RESOURCE_EXHAUSTED
        assert "STOCKOUT" in error["message"] and f"region: {SPOT_REGION}" in error["message"]
        assert in_use() == {"NVIDIA_L4": 1}  # the stocked-out deploy holds nothing

        refused = requests.post(faults, json={"status": "stockout", "routes": ["undeploy"]})
        assert refused.status_code == 400
        assert "deploy route only" in refused.json()["error"]["message"]
        assert requests.post(faults, json={"status": "stockout"}, timeout=10).ok
        state = requests.get(f"{echo.url}/emulator/state", timeout=10).json()
        assert state["faults"] == [{"status": "stockout", "count": 1, "routes": ["deploy"]}]

        recommended = requests.post(
            f"{echo.url}/v1beta1/{parent}:recommendSpec",
            json={"gcsUri": ECHO_URI, "checkMachineAvailability": True, "checkUserQuota": True},
            timeout=10,
        ).json()["recommendations"]
        offers = {
            (r["region"], r["spec"]["machineSpec"]["machineType"]): r["userQuotaState"]
            for r in recommended
        }
        assert offers[(SPOT_REGION, "g2-standard-12")] == "QUOTA_STATE_USER_HAS_QUOTA"

        assert deploy("stockout-c")["error"] == {
            "code": 8,
            "message": f"Resources are insufficient in region: {SPOT_REGION}.",
        }
        after = requests.get(f"{echo.url}/emulator/state", timeout=10).json()
        assert after["faults"] == [] and after["faults_fired"] == state["faults_fired"] + 1
        assert in_use() == {"NVIDIA_L4": 1}
        assert "error" not in deploy("stockout-d")  # the fault is spent: in stock again
        held.append("stockout-d")
        assert in_use() == {"NVIDIA_L4": 2}  # on demand: 1 Spot + 1 within the stock of 4
    finally:
        requests.delete(faults, timeout=10)
        for name in held:
            endpoint = requests.get(f"{echo.url}/v1beta1/{parent}/endpoints/{name}").json()
            requests.post(
                f"{echo.url}/v1beta1/{endpoint['name']}:undeployModel",
                json={"deployedModelId": endpoint["deployedModels"][0]["id"]},
                timeout=10,
            )


# Scale To Zero (echo engine; the emulator's clock is the test's, moved by hand)
STZ_FOLDER = "models/stz-model"


@pytest.fixture(scope="module")
def stz_uri(gcs: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("stz") / "stz-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return upload_folder(gcs.client, folder, STZ_FOLDER)


@pytest.fixture
def stz(stz_uri: str, tmp_path: Path) -> Iterator[tuple[Any, FakeClock]]:
    """An echo emulator of its own whose Scale To Zero timers read a FakeClock."""
    clock = FakeClock()
    with VertexEmulator(
        engine="echo", cache_dir=tmp_path, faults="", ca_dir=tmp_path, clock=clock
    ) as emulator:
        yield emulator, clock


def stz_chat(emulator: Any, endpoint: dict[str, Any]) -> requests.Response:
    url = f"https://{endpoint['dedicatedEndpointDns']}/v1beta1/{endpoint['name']}/chat/completions"
    body = {"messages": [{"role": "user", "content": "a b"}], "max_tokens": 2}
    return requests.post(url, json=body, timeout=10, verify=emulator.ca_path)


def get_endpoint(emulator: Any, name: str) -> dict[str, Any]:
    return requests.get(f"{emulator.url}/v1beta1/{name}", timeout=10).json()


def idle_for(emulator: Any, clock: FakeClock, seconds: float) -> None:
    """Move the clock once the emulator has seen the last answer go out (a client can read it
    a moment before the server closes it), then run the idle check."""
    deadline = time.monotonic() + 5
    while any(s["requests_in_flight"] for s in emulator.state()["scale_to_zero"]):
        assert time.monotonic() < deadline, "a request stayed in flight"
        time.sleep(0.01)
    clock.advance(seconds)
    emulator.control.scale_idle()


def test_scale_to_zero_from_modeldrop_yaml_scales_down_answers_429_and_scales_up(
    stz: tuple[Any, FakeClock],
) -> None:
    """modeldrop.yaml's scale_to_zero through the adapter and the SDK: the endpoint answers;
    idle past the periods its engine stops and its GPU is free; the next query gets Vertex AI's
    429 (dropped, not held) and scales it up; a retry then answers."""
    from google.api_core import exceptions

    from modeldrop.adapters.vertex_deployer import VertexDeployer
    from modeldrop.domain.deployment import State, new_deployment
    from modeldrop.local.vertex.scaling import NOT_READY

    emulator, clock = stz
    machine: dict[str, Any] = {
        "machine_type": "g2-standard-12",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    record = replace(
        new_deployment(BUCKET, STZ_FOLDER, "fp-stz", 1, datetime.now(UTC)),
        state=State.DEPLOYING,
        machine=machine,
        placement={"attempt": 1, "region": LOCATION, "machine_spec": machine, "spot": False},
        overrides={"scale_to_zero": {"idle_scaledown_seconds": 300}},
    )
    deployed = deploy_and_wait(VertexDeployer(vertex_settings(emulator)), record, timeout=30)
    endpoint = get_endpoint(emulator, deployed.endpoint)
    resources = endpoint["deployedModels"][0]["dedicatedResources"]
    assert "minReplicaCount" not in resources and resources["maxReplicaCount"] == 1
    assert resources["scaleToZeroSpec"] == {"idleScaledownPeriod": "300s"}
    assert stz_chat(emulator, endpoint).status_code == 200
    assert emulator.state()["capacity_in_use"] == {LOCATION: {"NVIDIA_L4": 1}}

    idle_for(emulator, clock, 3599)  # min_scaleup_period's default is an hour
    assert stz_chat(emulator, endpoint).status_code == 200
    idle_for(emulator, clock, 299)
    assert emulator.state()["scale_to_zero"][0]["phase"] == "up"
    idle_for(emulator, clock, 1)
    state = emulator.state()
    assert state["scale_to_zero"][0]["phase"] == "down"
    assert state["engines"] == [] and state["capacity_in_use"] == {}
    assert (
        "availableReplicaCount"
        not in get_endpoint(emulator, deployed.endpoint)["deployedModels"][0]["status"]
    )

    refused = stz_chat(emulator, endpoint)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": {"code": 429, "message": NOT_READY, "status": "RESOURCE_EXHAUSTED"}
    }
    assert isinstance(exceptions.from_http_response(refused), exceptions.TooManyRequests)
    deadline = time.monotonic() + 5  # "wait and then try your request again"
    while (answer := stz_chat(emulator, endpoint)).status_code == 429:
        assert time.monotonic() < deadline, "the model did not scale up within 5 s"
        time.sleep(0.02)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 2
    status = get_endpoint(emulator, deployed.endpoint)["deployedModels"][0]["status"]
    assert status["availableReplicaCount"] == 1
    assert emulator.state()["capacity_in_use"] == {LOCATION: {"NVIDIA_L4": 1}}
    assert [e["endpoint"] for e in emulator.state()["engines"]] == [deployed.endpoint]


def test_a_deploy_without_scale_to_zero_never_scales_down(
    stz: tuple[Any, FakeClock], stz_uri: str
) -> None:
    emulator, clock = stz
    response = rest_deploy(emulator.url, sdk_deploy_body(stz_uri, "always-ep", "always-model"))
    assert "error" not in wait_operation(emulator.url, response.json()["name"], 30)
    endpoint = get_endpoint(emulator, f"{PARENT}/endpoints/always-ep")
    assert stz_chat(emulator, endpoint).status_code == 200
    for _ in range(3):
        idle_for(emulator, clock, 40 * 24 * 3600)  # past every period, and past 30 days
    assert emulator.state()["scale_to_zero"] == []
    assert stz_chat(emulator, endpoint).status_code == 200
    deployed = get_endpoint(emulator, endpoint["name"])["deployedModels"][0]
    assert deployed["status"]["availableReplicaCount"] == 1
    assert "scaleToZeroSpec" not in deployed["dedicatedResources"]
    assert [e["endpoint"] for e in emulator.state()["engines"]] == [endpoint["name"]]


# the emulator as a process: engines die with it, even on SIGKILL
@serving_test
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_engines_die_with_the_emulator_process(
    sig: signal.Signals, tiny_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "modeldrop.cli",
        "local",
        "vertex",
        "--port",
        str(port),
        "--engine",
        "transformers",
        "--cache",
        str(tmp_path),
        "--ca-dir",
        str(tmp_path),
    ]
    with open(tmp_path / "emulator.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    engine_pid = None
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(base, timeout=1).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "emulator.log"
            ).read_text()
            time.sleep(0.1)
        response = rest_deploy(base, sdk_deploy_body(tiny_uri, "proc-ep", "proc-model"))
        assert "error" not in wait_operation(base, response.json()["name"])
        engine_pid = requests.get(f"{base}/emulator/state").json()["engines"][0]["pid"]
        assert process_alive(engine_pid)
        proc.send_signal(sig)
        proc.wait(30)
        assert wait_gone(engine_pid), f"engine {engine_pid} outlived the emulator ({sig.name})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if engine_pid and process_alive(engine_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(engine_pid, signal.SIGKILL)
