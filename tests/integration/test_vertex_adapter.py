"""Our Vertex adapters (deployer, endpoint client) against the local Vertex AI emulator.

Contract: the JSON our deployer makes the real SDK send (camelCase, integer enums), the REST
paths of its other calls (operations at /v1beta1/{name}), and every field it sets read back
from the emulator. Integration: a tiny
model deployed through the adapter and queried through the endpoint client over https, verified
against the emulator's CA through REQUESTS_CA_BUNDLE as on the local stack (counting tokens,
never comparing text). Errors: the emulator's fault mode, mapped to retryable or permanent
with hints, and ALREADY_EXISTS recovery.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from modeldrop.adapters.endpoint_client import DedicatedEndpointClient
from modeldrop.adapters.serving_logs import CloudServingLogs, LogsUnavailable
from modeldrop.adapters.vertex_deployer import VertexDeployer
from modeldrop.domain.deployment import Deployment, State, new_deployment
from modeldrop.local.vertex import VertexEmulator
from modeldrop.service.ports import DeployError, UpstreamError
from modeldrop.settings import Settings
from tests.fixtures.vertex import (
    BUCKET,
    MISSING_SERVING,
    SKIP_SERVING,
    Recorder,
    deploy_and_wait,
    upload_folder,
    wait_gone,
)

MACHINE = {
    "machine_type": "g2-standard-12",
    "accelerator_type": "NVIDIA_L4",
    "accelerator_count": 1,
}
PARENT = "projects/modeldrop-local/locations/us-central1"
OVERRIDES = {
    "model_display_name": "tiny adapter model",
    "endpoint_display_name": "tiny-adapter-endpoint",
    "replicas": {"min": 1, "max": 2},
    "labels": {"team": "ml", "env": "test"},
}


def settings_for(emulator: VertexEmulator) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "modeldrop-local",
            "MODELDROP_REGION": "us-central1",
            "MODELDROP_VERTEX_API_ENDPOINT": emulator.url,
            "MODELDROP_VERTEX_ANONYMOUS": "true",
            "MODELDROP_UPSTREAM_TIMEOUT": "120",
        }
    )


def endpoint_client(emulator: VertexEmulator, monkeypatch: pytest.MonkeyPatch):
    """The production client, trusting the emulator's CA as the local stack's functions do."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_path))
    return DedicatedEndpointClient(settings_for(emulator))


def placed(region: str = "us-central1", spot: bool = False, attempt: int = 1) -> dict[str, Any]:
    """A placement attempt of MACHINE."""
    return {
        "attempt": attempt,
        "region": region,
        "machine_spec": MACHINE,
        "spot": spot,
        "hourly_usd": 1.1505,
    }


def record(folder: str, **changes: Any) -> Deployment:
    d = new_deployment(BUCKET, folder, f"fp-{folder}", 1, datetime.now(UTC))
    values = {"state": State.DEPLOYING, "machine": MACHINE, "placement": placed(), **changes}
    return replace(d, **values)


def wait_done(deployer: VertexDeployer, operation: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = deployer.operation_status(operation)
        if status.done:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{operation} not done in {timeout} s")


@pytest.fixture(scope="module")
def tiny(gcs, tmp_path_factory) -> str:
    if MISSING_SERVING:
        pytest.skip(SKIP_SERVING)
    from modeldrop.local.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-adapter")
    upload_folder(gcs.client, folder, "models/tiny-adapter")
    return "models/tiny-adapter"


@pytest.fixture(scope="module")
def emulator(gcs, tmp_path_factory):
    cache = tmp_path_factory.mktemp("c")
    with VertexEmulator(engine="transformers", cache_dir=cache, faults="", ca_dir=cache) as e:
        e.recorder = Recorder(e.app.wsgi_app)
        e.app.wsgi_app = e.recorder
        yield e


@pytest.fixture(scope="module")
def deployed(emulator, tiny):
    """The tiny model deployed through our adapter; returns (record, deployer, seconds)."""
    deployer = VertexDeployer(settings_for(emulator))
    started = time.perf_counter()
    d = deploy_and_wait(deployer, record(tiny, overrides=OVERRIDES), timeout=180)
    seconds = time.perf_counter() - started
    print(f"\ndeploy call -> operation done: {seconds:.2f} s")
    return d, deployer, seconds


def test_deploy_sends_the_json_the_api_expects(emulator, deployed):
    d, _, _ = deployed
    method, path, query, body = next(c for c in emulator.recorder.calls if c[1].endswith(":deploy"))
    assert (method, path) == (
        "POST",
        "/v1beta1/projects/modeldrop-local/locations/us-central1:deploy",
    )
    assert "enum-encoding%3Dint" in query
    sent = json.loads(body)
    assert sent["customModel"] == {"gcsUri": d.gcs_uri}
    assert sent["modelConfig"] == {
        "modelDisplayName": "tiny adapter model",
        "modelUserId": d.vertex_id,
    }
    assert sent["endpointConfig"] == {
        "endpointDisplayName": "tiny-adapter-endpoint",
        "dedicatedEndpointEnabled": True,
        "endpointUserId": d.vertex_id,
    }
    assert sent["deployConfig"]["dedicatedResources"] == {
        "machineSpec": {
            "machineType": "g2-standard-12",
            "acceleratorType": 11,
            "acceleratorCount": 1,
        },
        "minReplicaCount": 1,
        "maxReplicaCount": 2,
    }
    polls = [c for c in emulator.recorder.calls if "/operations/" in c[1]]
    assert polls and all(c[0] == "GET" and c[1].startswith("/v1beta1/projects/") for c in polls)


def test_every_field_we_set_reads_back(emulator, deployed):
    d, deployer, _ = deployed
    endpoint = requests.get(f"{emulator.url}/v1beta1/{d.endpoint}", timeout=10).json()
    assert endpoint["name"].endswith(f"/endpoints/{d.vertex_id}")
    assert endpoint["displayName"] == "tiny-adapter-endpoint"
    assert endpoint["dedicatedEndpointDns"] == emulator.dedicated_dns == d.endpoint_dns
    model = endpoint["deployedModels"][0]
    assert model["model"].endswith(f"/models/{d.vertex_id}")
    resources = model["dedicatedResources"]
    assert resources["machineSpec"] == {
        "machineType": "g2-standard-12",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 1,
    }
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 2)
    deployer.set_labels(d.endpoint, OVERRIDES["labels"])
    assert deployer.describe_endpoint(d.endpoint).labels == OVERRIDES["labels"]


def test_private_service_connect_and_spot_are_sent(gcs, tmp_path):
    folder = tmp_path / "psc"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    upload_folder(gcs.client, folder, "models/psc")
    cache = tmp_path / "cache"
    with VertexEmulator(engine="echo", cache_dir=cache, faults="", ca_dir=cache) as e:
        recorder = Recorder(e.app.wsgi_app)
        e.app.wsgi_app = recorder
        d = record(
            "models/psc",
            overrides={
                "private_endpoint": {"enabled": True, "project_allowlist": ["client-project-1"]}
            },
            placement=placed(spot=True),
        )
        VertexDeployer(settings_for(e)).deploy(d)
        sent = json.loads(next(c for c in recorder.calls if c[1].endswith(":deploy"))[3])
        assert sent["endpointConfig"]["privateServiceConnectConfig"] == {
            "enablePrivateServiceConnect": True,
            "projectAllowlist": ["modeldrop-local", "client-project-1"],  # its own project too
        }
        assert sent["deployConfig"]["dedicatedResources"]["spot"] is True
        endpoint = requests.get(
            f"{e.url}/v1beta1/projects/modeldrop-local/locations/us-central1/"
            f"endpoints/{d.vertex_id}",
            timeout=10,
        ).json()
        assert endpoint["privateServiceConnectConfig"]["projectAllowlist"] == [
            "modeldrop-local",
            "client-project-1",
        ]


def test_chat_unary_and_streamed_predict_and_stream_raw_predict(emulator, deployed, monkeypatch):
    d, _, _ = deployed
    client = endpoint_client(emulator, monkeypatch)
    body = {
        "model": d.vertex_id,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 12,
        "temperature": 0,
        "top_p": 1,
        "ignore_eos": True,
    }
    unary = client.chat_completions(d, body)
    assert unary["choices"][0]["message"]["role"] == "assistant"
    assert unary["usage"]["completion_tokens"] == 12  # ignore_eos: exactly max_tokens

    started = time.perf_counter()
    first = None
    events = []
    for chunk in client.stream_chat_completions(d, body):
        first = first or time.perf_counter() - started
        events += [line for line in chunk.decode().splitlines() if line.startswith("data: ")]
    deltas = [json.loads(e[6:]) for e in events if e != "data: [DONE]"]
    tokens = sum(1 for e in deltas if e["choices"] and e["choices"][0]["delta"].get("content"))
    assert events[-1] == "data: [DONE]" and 1 <= tokens <= 12
    print(f"\nfirst streamed chunk after {first * 1000:.1f} ms ({tokens} content chunks)")

    prediction = client.predict(
        d,
        {
            "instances": [
                {
                    "prompt": "hello",
                    "max_tokens": 8,
                    "temperature": 0,
                    "top_p": 1,
                    "ignore_eos": True,
                },
                {"prompt": "world", "max_tokens": 8, "raw_response": True},
            ]
        },
    )
    assert len(prediction["predictions"]) == 2
    assert prediction["predictions"][0].startswith("Prompt:\nhello\nOutput:\n")

    raw = b"".join(
        client.stream_raw_predict(
            d,
            {"instances": [{"prompt": "hello", "max_tokens": 8, "temperature": 0, "stream": True}]},
        )
    )
    assert raw.count(b"data: ") >= 2


def test_upstream_errors_keep_status_and_body(emulator, deployed, monkeypatch):
    d, _, _ = deployed
    client = endpoint_client(emulator, monkeypatch)
    with pytest.raises(UpstreamError) as caught:
        client.chat_completions(replace(d, endpoint=d.endpoint + "-missing"), {"messages": []})
    assert caught.value.status == 404 and caught.value.body


def test_retried_deploy_finds_its_own_endpoint(emulator, deployed):
    d, deployer, _ = deployed
    before = len(requests.get(f"{emulator.url}/emulator/state", timeout=10).json()["endpoints"])
    again = deployer.deploy(d)
    assert again.operation is None and again.endpoint == d.endpoint
    after = len(requests.get(f"{emulator.url}/emulator/state", timeout=10).json()["endpoints"])
    assert after == before


def test_undeploy_removes_the_endpoint_and_its_engine(emulator, deployed):
    d, deployer, _ = deployed
    pids = [e["pid"] for e in emulator.control.engines() if e["endpoint"] == d.endpoint]
    deadline = time.monotonic() + 60
    while not deployer.undeploy(d.endpoint):
        assert time.monotonic() < deadline, "undeploy did not finish"
        time.sleep(0.2)
    assert deployer.describe_endpoint(d.endpoint) is None
    assert pids and all(wait_gone(pid) for pid in pids)


@pytest.fixture
def echo(gcs, tmp_path):
    folder = tmp_path / "echo-adapter"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    upload_folder(gcs.client, folder, "models/echo-adapter")
    cache = tmp_path / "cache"
    with VertexEmulator(engine="echo", cache_dir=cache, faults="", ca_dir=cache) as e:
        yield e


def inject(emulator, status: int, route: str = "deploy", count: int = 1) -> None:
    fault = {"status": status, "count": count, "routes": [route]}
    response = requests.post(f"{emulator.url}/emulator/faults", json=fault, timeout=10)
    response.raise_for_status()


@pytest.mark.parametrize(
    ("status", "code", "retryable", "hint_has"),
    [
        (503, "VERTEX_UNAVAILABLE", True, "retried"),
        (500, "VERTEX_INTERNAL", True, "retried"),
        (504, "VERTEX_DEADLINE_EXCEEDED", True, "retried"),
        (429, "VERTEX_QUOTA", False, "custom_model_serving_nvidia_l4_gpus"),
        (403, "VERTEX_PERMISSION_DENIED", False, "aiplatform.endpoints.deploy"),
        (400, "VERTEX_INVALID_ARGUMENT", False, "invalid argument"),
    ],
)
def test_fault_mode_errors_map_to_retryable_or_permanent_with_hints(
    echo, status, code, retryable, hint_has
):
    deployer = VertexDeployer(settings_for(echo))
    d = record("models/echo-adapter")
    inject(echo, status)
    with pytest.raises(DeployError) as caught:
        deployer.deploy(d)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert hint_has in caught.value.hint
    started = deployer.deploy(d)  # the fault is spent: the next call goes through
    assert started.operation


def test_a_retried_deploy_finds_its_operation_in_the_list(echo):
    deployer = VertexDeployer(settings_for(echo))
    d, other = record("models/echo-adapter"), record("models/echo-adapter", id="other")
    started = deployer.deploy(d)
    assert deployer.deploy(d).operation is None  # ALREADY_EXISTS: the retry has no operation
    assert deployer.find_deploy_operation(d) == started.operation
    assert deployer.find_deploy_operation(other) is None
    location = f"{echo.url}/v1beta1/projects/modeldrop-local/locations/us-central1"
    page = requests.get(f"{location}/operations", params={"pageSize": 1}, timeout=10).json()
    assert [o["name"] for o in page["operations"]] == [started.operation]
    assert "nextPageToken" not in page


def test_invalid_request_passes_the_reason(echo):
    deployer = VertexDeployer(settings_for(echo))
    giant = {**placed(), "machine_spec": {**MACHINE, "machine_type": "x9-giant"}}
    d = record("models/echo-adapter", placement=giant)
    with pytest.raises(DeployError) as caught:
        deployer.deploy(d)
    assert caught.value.code == "VERTEX_INVALID_ARGUMENT" and not caught.value.retryable
    assert "x9-giant" in caught.value.hint


def test_failed_operation_reports_the_engine_error(echo, gcs, tmp_path):
    deployer = VertexDeployer(settings_for(echo))
    status = wait_done(deployer, deployer.deploy(record("models/echo-adapter")).operation, 60)
    assert status.done and status.error is None
    missing = record("models/not-uploaded")
    with pytest.raises(DeployError) as caught:
        deployer.deploy(missing)
    assert not caught.value.retryable and "not-uploaded" in caught.value.message


# serving logs: the Cloud Logging adapter against the emulator's entries:list
def serving_logs(emulator: VertexEmulator) -> CloudServingLogs:
    """The production adapter, pointed at the emulator as the local stack points it."""
    return CloudServingLogs(replace(settings_for(emulator), logging_api_endpoint=emulator.url))


def test_serving_logs_of_a_deployed_endpoint_newest_first(echo, monkeypatch):
    deployer = VertexDeployer(settings_for(echo))
    d = deploy_and_wait(deployer, record("models/echo-adapter"))
    endpoint_client(echo, monkeypatch).chat_completions(
        d, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    )
    logs = serving_logs(echo)
    entries = logs.newest(d, 10)
    assert 3 <= len(entries) <= 10  # starting, serving, the request
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in entries[0].text
    assert "echo engine starting" in entries[-1].text
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
    assert {e.severity for e in entries} == {"INFO"}
    assert logs.newest(d, 1) == entries[:1]
    other = replace(d, deployed_model_id="1234")  # another deployed model's lines: none
    assert logs.newest(other, 10) == []


def test_serving_logs_of_a_deploy_whose_engine_failed(echo, gcs, tmp_path):
    folder = tmp_path / "echo-broken"
    folder.mkdir()
    (folder / "config.json").write_text("[]")
    upload_folder(gcs.client, folder, "models/echo-broken-adapter")
    deployer = VertexDeployer(settings_for(echo))
    d = record("models/echo-broken-adapter")
    status = wait_done(deployer, deployer.deploy(d).operation, 60)
    assert status.error is not None and "config.json" in status.error["message"]
    failed = replace(d, state=State.FAILED)  # no endpoint recorded: the attempt's is read
    entries = serving_logs(echo).newest(failed, 20)
    assert entries[0].text.endswith("echo engine stopped")
    errors = [e for e in entries if e.severity == "ERROR"]
    assert len(errors) == 1 and "not a JSON object" in errors[0].text
    assert serving_logs(echo).newest(replace(d, placement=None), 20) == []  # no attempt yet


def test_an_unreadable_serving_log_is_logs_unavailable(echo):
    d = record("models/echo-adapter", endpoint=f"{PARENT}/endpoints/never-deployed")
    inject(echo, 403, "logs")
    with pytest.raises(LogsUnavailable) as caught:
        serving_logs(echo).newest(d, 5)
    assert caught.value.code == "LOGS_UNAVAILABLE"
    assert "roles/logging.viewer" in caught.value.hint
    assert "logging.logEntries.list" in caught.value.message  # the permission, as Google says
    inject(echo, 503, "logs")
    with pytest.raises(LogsUnavailable, match="HTTP 503"):
        serving_logs(echo).newest(d, 5)
    gone = CloudServingLogs(replace(settings_for(echo), logging_api_endpoint="http://127.0.0.1:9"))
    with pytest.raises(LogsUnavailable, match="could not be reached"):
        gone.newest(d, 5)


# capacity: the emulator's quota, stockouts and RecommendSpec through the adapter
SCARCE: dict[str, Any] = {"europe-west4": {"NVIDIA_L4": {"quota": 0}}, "us-central1": {}}


@pytest.fixture
def scarce(gcs, tmp_path):
    """The echo emulator with no L4 quota in europe-west4 (and none of its limits elsewhere)."""
    folder = tmp_path / "echo-scarce"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    upload_folder(gcs.client, folder, "models/echo-scarce")
    cache = tmp_path / "cache"
    with VertexEmulator(
        engine="echo", cache_dir=cache, faults="", ca_dir=cache, capacity=SCARCE
    ) as e:
        yield e


def test_recommend_spec_reports_quota_per_region(scarce):
    deployer = VertexDeployer(settings_for(scarce))
    for region in ("europe-west4", "us-central1"):
        found = deployer.recommend_spec(f"gs://{BUCKET}/models/echo-scarce", region)
        assert found[0].region == region
        quota = {(r.region, r.machine_spec["machine_type"]): r.has_quota for r in found}
        assert quota[("europe-west4", "g2-standard-12")] is False
        assert quota[("us-central1", "g2-standard-12")] is True
        l4 = next(r for r in found if r.machine_spec["machine_type"] == "g2-standard-12")
        assert l4.machine_spec == MACHINE and l4.base_model == ""
    elsewhere = replace(settings_for(scarce), vertex_api_endpoint=f"{scarce.url}/nowhere")
    with pytest.raises(DeployError) as caught:  # not offered: the caller uses the catalog
        VertexDeployer(elsewhere).recommend_spec(f"gs://{BUCKET}/models/echo-scarce", "x1")
    assert caught.value.code == "VERTEX_NOT_FOUND" and caught.value.capacity is None


def test_quota_refusal_and_stockout_say_why(scarce):
    deployer = VertexDeployer(settings_for(scarce))
    capacity = f"{scarce.url}/emulator/capacity"
    requests.post(capacity, json={"us-central1": {"NVIDIA_L4": {"quota": 0}}}, timeout=10)
    with pytest.raises(DeployError) as caught:
        deployer.deploy(record("models/echo-scarce"))
    refused = caught.value
    assert (refused.code, refused.capacity, refused.retryable) == (
        "VERTEX_QUOTA",
        "no_quota",
        False,
    )
    assert "custom_model_serving_nvidia_l4_gpus" in refused.hint
    requests.post(capacity, json={"us-central1": {"NVIDIA_L4": {"stock": 0}}}, timeout=10)
    status = wait_done(deployer, deployer.deploy(record("models/echo-scarce")).operation, 60)
    assert status.error and status.error["code"] == "VERTEX_STOCKOUT"
    assert status.capacity == "stockout" and "us-central1" in status.error["hint"]


def test_an_attempt_in_another_region_is_deployed_and_read_there(scarce):
    deployer = VertexDeployer(settings_for(scarce))
    d = record("models/echo-scarce", placement=placed("asia-east1", attempt=3))
    operation = deployer.deploy(d).operation
    assert operation and operation.startswith("projects/modeldrop-local/locations/asia-east1/")
    status = wait_done(deployer, operation, 60)
    assert status.endpoint == f"projects/modeldrop-local/locations/asia-east1/endpoints/md-{d.id}-3"
    info = deployer.describe_endpoint(status.endpoint)
    assert info and info.ready
    assert deployer.find_deploy_operation(d) == operation
    while not deployer.undeploy(status.endpoint):
        time.sleep(0.1)
