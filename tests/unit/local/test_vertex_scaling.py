"""Scale To Zero in the local Vertex AI emulator: the request checks, the deployed model's JSON,
and the control plane with a fake engine and a clock the tests move (no sleeping, no network)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform_v1beta1 as v1beta1
from google.protobuf import json_format

from modeldrop.adapters.vertex_deployer import deploy_request
from modeldrop.domain.deployment import new_deployment
from modeldrop.local.vertex import control as control_module
from modeldrop.local.vertex.capacity import Capacity
from modeldrop.local.vertex.checks import STZ_DEFAULT_S, check_deploy_request
from modeldrop.local.vertex.control import ControlPlane
from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.resources import Registry
from modeldrop.local.vertex.scaling import NOT_READY, UNDEPLOY_AFTER_S, Phase
from tests.fixtures.vertex import FakeClock
from tests.fixtures.vertex_requests import sdk_deploy_body

PROJECT, LOCATION = "p", "us-central1"
ENDPOINT = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/stz-ep"
DAY = 24 * 3600.0


def stz_body(endpoint_id: str = "stz-ep", max_replicas: int = 2, **spec: str) -> dict[str, Any]:
    """The SDK's JSON for a Scale To Zero deploy: minReplicaCount 0 is left out, as the REST
    transport leaves out zero fields."""
    body = sdk_deploy_body("gs://bkt/models/m", endpoint_id, endpoint_id, max_replicas)
    resources = body["deployConfig"]["dedicatedResources"]
    del resources["minReplicaCount"]
    resources["scaleToZeroSpec"] = spec or {"idleScaledownPeriod": "300s"}
    return body


def resources_of(body: dict[str, Any]) -> dict[str, Any]:
    return body["deployConfig"]["dedicatedResources"]


def rejected(body: dict[str, Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        check_deploy_request(body, PROJECT, LOCATION)
    assert info.value.http_status == 400 and info.value.status == "INVALID_ARGUMENT"
    return info.value


# the request checks
def test_min_replica_count_zero_is_scale_to_zero_with_the_documented_defaults() -> None:
    spec = check_deploy_request(stz_body(), PROJECT, LOCATION)
    stz = spec.scale_to_zero
    assert stz is not None and spec.min_replicas == 0 and spec.max_replicas == 2
    assert stz.idle_scaledown == 300 and stz.min_scaleup == STZ_DEFAULT_S == 3600
    assert stz.replicas == 1 and spec.starting_replicas == 1  # initial_replica_count default
    assert stz.to_json() == {"scaleToZeroSpec": {"idleScaledownPeriod": "300s"}}
    plain = check_deploy_request(sdk_deploy_body("gs://bkt/m", "e", "m"), PROJECT, LOCATION)
    assert plain.scale_to_zero is None and plain.starting_replicas == 1


def test_modeldrops_own_request_is_what_the_emulator_reads() -> None:
    """deploy_request's mapping, as the SDK sends it (zero fields left out), checked here."""
    record = new_deployment("bkt", "models/m", "fp", 1, datetime.now(UTC))
    placement = {
        "attempt": 1,
        "region": LOCATION,
        "machine_spec": {
            "machine_type": "g2-standard-12",
            "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1,
        },
        "spot": False,
    }
    overrides = {"scale_to_zero": {"idle_scaledown_seconds": 1200}, "replicas": {"max": 2}}
    request = v1beta1.DeployRequest(
        deploy_request(replace(record, placement=placement, overrides=overrides), PROJECT)
    )
    sent = json_format.MessageToDict(v1beta1.DeployRequest.pb(request))
    assert "minReplicaCount" not in resources_of(sent)
    spec = check_deploy_request(sent, PROJECT, LOCATION)
    assert spec.scale_to_zero is not None and spec.scale_to_zero.idle_scaledown == 1200
    assert (spec.min_replicas, spec.max_replicas) == (0, 2)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"scaleToZeroSpec": {"idleScaledownPeriod": "299s"}}, "idle_scaledown_period is 299s"),
        ({"scaleToZeroSpec": {"idleScaledownPeriod": "28800.5s"}}, "between 300s"),
        ({"scaleToZeroSpec": {"minScaleupPeriod": "60s"}}, "min_scaleup_period is 60s"),
        ({"scaleToZeroSpec": {"minScaleupPeriod": "86400s"}}, "and 28800s (8 hours)"),
        ({"initialReplicaCount": 3}, "initial_replica_count is 3"),
        ({"initialReplicaCount": -1}, "initial_replica_count is -1"),
        ({"maxReplicaCount": None}, "max_replica_count is 0"),
        ({"minReplicaCount": 1}, "apply to Scale To Zero only"),
    ],
)
def test_scale_to_zero_settings_outside_the_api_rules_are_refused(
    change: dict[str, Any], needle: str
) -> None:
    body = stz_body()
    for key, value in change.items():
        if value is None:
            del resources_of(body)[key]
        else:
            resources_of(body)[key] = value
    assert needle in rejected(body).message


def test_scale_to_zero_is_refused_on_a_shared_public_endpoint_only() -> None:
    body = stz_body()
    body["endpointConfig"] = {"dedicatedEndpointDisabled": True}
    assert "shared public endpoints" in rejected(body).message
    body["endpointConfig"]["privateServiceConnectConfig"] = {
        "enablePrivateServiceConnect": True,
        "projectAllowlist": ["client-project"],
    }
    assert check_deploy_request(body, PROJECT, LOCATION).scale_to_zero is not None


def test_initial_replica_count_and_both_periods_are_kept() -> None:
    body = stz_body(max_replicas=3, minScaleupPeriod="600s", idleScaledownPeriod="28800s")
    resources_of(body)["initialReplicaCount"] = 3
    spec = check_deploy_request(body, PROJECT, LOCATION)
    assert spec.starting_replicas == 3 and spec.scale_to_zero is not None
    assert (spec.scale_to_zero.min_scaleup, spec.scale_to_zero.idle_scaledown) == (600, 28800)
    assert spec.scale_to_zero.to_json() == {
        "initialReplicaCount": 3,
        "scaleToZeroSpec": {"minScaleupPeriod": "600s", "idleScaledownPeriod": "28800s"},
    }


# the control plane, with a fake engine and a fake clock
class FakeEngine:
    """An engine that is ready when `gate` is set; records its starts and stops."""

    kind = "fake"
    pid = None

    def __init__(self, folder: Path, model_id: str, log_dir: Path, gate: threading.Event) -> None:
        self.folder, self.served_model, self.gate = folder, model_id, gate
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"fake-{model_id}-{id(self)}.log"
        self.log_path.write_text("")
        self.url = "http://127.0.0.1:9"
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def wait_ready(self, timeout: float) -> None:
        assert self.gate.wait(5), "the test never let the engine get ready"

    def stop(self) -> None:
        self.stopped = True

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "pid": None, "url": self.url, "served_model": self.served_model}


class Plane:
    """A ControlPlane whose engines are FakeEngines, its clock a Clock, GCS left out."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scale_check_s: float | None = None
    ) -> None:
        self.clock = FakeClock()
        self.gate = threading.Event()
        self.gate.set()
        self.engines: list[FakeEngine] = []

        def create(kind: str, folder: Path, model_id: str, log_dir: Path) -> FakeEngine:
            self.engines.append(FakeEngine(folder, model_id, log_dir, self.gate))
            return self.engines[-1]

        local = tmp_path / "model"
        local.mkdir()
        monkeypatch.setattr(control_module, "create_engine", create)
        monkeypatch.setattr(control_module, "list_model_folder", lambda uri: (None, []))
        monkeypatch.setattr(control_module, "fetch", lambda folder, files, cache: local)
        self.capacity = Capacity({LOCATION: {"NVIDIA_L4": {"quota": 4, "stock": 4}}})
        self.control = ControlPlane(
            Registry(dns="127.0.0.1:9"),
            engine="echo",
            cache_dir=tmp_path / "cache",
            capacity=self.capacity,
            clock=self.clock,
            scale_check_s=scale_check_s,
        )

    def deploy(self, body: dict[str, Any]) -> str:
        """Deploy and wait for the operation; the endpoint's name."""
        operation = self.control.deploy(PROJECT, LOCATION, body)
        assert self.wait(lambda: self.control.registry.operation(operation["name"])["done"])
        done = self.control.registry.operation(operation["name"])
        assert "error" not in done, done
        return str(done["response"]["endpoint"])

    def query(self, endpoint: str = ENDPOINT) -> FakeEngine:
        """One whole request: admitted, then finished."""
        engine, meta = self.control.serving(endpoint)
        self.control.finished(endpoint, meta["deployedModelId"])
        return engine

    def refused(self, endpoint: str = ENDPOINT) -> RpcError:
        with pytest.raises(RpcError) as info:
            self.control.serving(endpoint)
        return info.value

    def deployed(self, endpoint: str = ENDPOINT) -> dict[str, Any]:
        return self.control.registry.endpoint(endpoint)["deployedModels"][0]

    def phase(self, endpoint: str = ENDPOINT) -> Phase:
        deployed_id = self.deployed(endpoint)["id"]
        return self.control._scaled[(endpoint, deployed_id)].phase

    def gpus(self) -> int:
        return self.capacity.in_use().get(LOCATION, {}).get("NVIDIA_L4", 0)

    @staticmethod
    def wait(condition: Callable[[], Any], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plane]:
    p = Plane(tmp_path, monkeypatch)
    yield p
    p.control.shutdown()


def test_an_idle_model_scales_to_zero_and_frees_its_engine_and_gpus(plane: Plane) -> None:
    plane.deploy(stz_body(minScaleupPeriod="300s", idleScaledownPeriod="600s"))
    first = plane.query()
    assert plane.gpus() == 1 and plane.deployed()["status"]["availableReplicaCount"] == 1
    plane.clock.advance(599)
    plane.control.scale_idle()
    assert plane.phase() is Phase.UP and not first.stopped and plane.query() is first
    plane.clock.advance(599)  # 599 s since that last request
    plane.control.scale_idle()
    assert plane.phase() is Phase.UP
    plane.clock.advance(1)
    plane.control.scale_idle()
    assert plane.phase() is Phase.DOWN and first.stopped
    assert plane.gpus() == 0 and plane.capacity.in_use() == {}
    assert plane.control.engines() == []
    deployed = plane.deployed()
    assert "availableReplicaCount" not in deployed["status"]  # 0: proto3 JSON leaves it out
    assert deployed["dedicatedResources"]["scaleToZeroSpec"] == {
        "minScaleupPeriod": "300s",
        "idleScaledownPeriod": "600s",
    }
    assert "minReplicaCount" not in deployed["dedicatedResources"]
    parsed = v1beta1.DeployedModel.from_json(json.dumps(deployed))  # no field it lacks
    assert parsed.dedicated_resources.scale_to_zero_spec.idle_scaledown_period == timedelta(
        seconds=600
    )
    assert parsed.status.available_replica_count == 0


def test_a_request_at_zero_gets_429_and_starts_one_scale_up(plane: Plane) -> None:
    plane.deploy(stz_body())
    plane.clock.advance(STZ_DEFAULT_S)  # min_scaleup_period's default, 1 hour
    plane.control.scale_idle()
    assert plane.phase() is Phase.DOWN
    plane.gate.clear()  # the next engine starts but is not ready yet
    error = plane.refused()
    assert error.to_json() == {
        "error": {"code": 429, "message": NOT_READY, "status": "RESOURCE_EXHAUSTED"}
    }
    assert error.message.startswith("Model is not yet ready for inference.")
    assert plane.wait(lambda: len(plane.engines) == 2 and plane.engines[1].started)
    assert plane.phase() is Phase.STARTING and plane.gpus() == 1  # held while it starts
    assert plane.refused().http_status == 429  # dropped too, and no second scale-up
    assert any(e.get("starting") for e in plane.control.engines())
    plane.gate.set()
    assert plane.wait(lambda: plane.phase() is Phase.UP)
    assert len(plane.engines) == 2 and plane.query() is plane.engines[1]
    assert plane.deployed()["status"]["availableReplicaCount"] == 1 and plane.gpus() == 1


def test_min_scaleup_period_keeps_a_model_up_after_each_scale_up(plane: Plane) -> None:
    plane.deploy(stz_body())  # idle 300 s, min_scaleup_period 3600 s
    plane.clock.advance(3599)
    plane.control.scale_idle()
    assert plane.phase() is Phase.UP
    plane.clock.advance(1)
    plane.control.scale_idle()
    assert plane.phase() is Phase.DOWN
    assert plane.refused().http_status == 429
    assert plane.wait(lambda: plane.phase() is Phase.UP)
    plane.clock.advance(3599)
    plane.control.scale_idle()
    assert plane.phase() is Phase.UP  # the period counts again from the scale-up
    plane.clock.advance(1)
    plane.control.scale_idle()
    assert plane.phase() is Phase.DOWN


def test_a_request_in_flight_keeps_its_model_up(plane: Plane) -> None:
    plane.deploy(stz_body(minScaleupPeriod="300s", idleScaledownPeriod="300s"))
    engine, meta = plane.control.serving(ENDPOINT)  # a long stream, say
    plane.clock.advance(10 * 3600)
    plane.control.scale_idle()
    assert plane.phase() is Phase.UP and not engine.stopped
    plane.control.finished(ENDPOINT, meta["deployedModelId"])
    plane.clock.advance(299)
    plane.control.scale_idle()
    assert plane.phase() is Phase.UP  # idle counts from the end of the request
    plane.clock.advance(1)
    plane.control.scale_idle()
    assert plane.phase() is Phase.DOWN


def test_a_deploy_without_scale_to_zero_never_scales_down(plane: Plane) -> None:
    endpoint = plane.deploy(sdk_deploy_body("gs://bkt/models/m", "plain-ep", "plain-model"))
    engine = plane.query(endpoint)
    plane.clock.advance(40 * DAY)
    plane.control.scale_idle()
    assert plane.query(endpoint) is engine and not engine.stopped
    assert plane.control._scaled == {} and plane.gpus() == 1
    deployed = plane.deployed(endpoint)
    assert deployed["status"]["availableReplicaCount"] == 1
    assert "scaleToZeroSpec" not in deployed["dedicatedResources"]


def test_a_scale_up_that_stocks_out_stays_at_zero_with_the_reason(plane: Plane) -> None:
    plane.deploy(stz_body())
    plane.clock.advance(STZ_DEFAULT_S)
    plane.control.scale_idle()
    plane.capacity.replace({LOCATION: {"NVIDIA_L4": {"quota": 4, "stock": 0}}})
    assert plane.refused().http_status == 429
    assert plane.wait(lambda: "message" in plane.deployed()["status"])
    assert plane.deployed()["status"]["message"] == (
        f"Scale-up from zero failed: Resources are insufficient in region: {LOCATION}."
    )
    assert plane.phase() is Phase.DOWN and len(plane.engines) == 1 and plane.gpus() == 0
    plane.capacity.replace({})  # stock again: the next request scales it up
    assert plane.refused().http_status == 429
    assert plane.wait(lambda: plane.phase() is Phase.UP)
    assert "message" not in plane.deployed()["status"] and plane.gpus() == 1


def test_thirty_days_at_zero_undeploy_the_model(plane: Plane) -> None:
    plane.deploy(stz_body())
    plane.clock.advance(STZ_DEFAULT_S)
    plane.control.scale_idle()
    plane.clock.advance(UNDEPLOY_AFTER_S - 1)
    plane.control.scale_idle()
    assert plane.phase() is Phase.DOWN
    plane.clock.advance(1)
    plane.control.scale_idle()
    assert plane.control.registry.endpoint(ENDPOINT)["deployedModels"] == []
    assert plane.control._scaled == {}
    with pytest.raises(RpcError, match="has no deployed model"):
        plane.control.serving(ENDPOINT)


def test_undeploying_while_it_scales_up_leaves_no_engine_and_no_gpus(plane: Plane) -> None:
    plane.deploy(stz_body())
    plane.clock.advance(STZ_DEFAULT_S)
    plane.control.scale_idle()
    plane.gate.clear()
    plane.refused()
    assert plane.wait(lambda: len(plane.engines) == 2 and plane.engines[1].started)
    plane.control.undeploy(ENDPOINT, {"deployedModelId": plane.deployed()["id"]})
    plane.gate.set()
    assert plane.wait(lambda: plane.engines[1].stopped)
    assert plane.gpus() == 0 and plane.control.engines() == []


def test_the_watcher_scales_idle_models_down_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = Plane(tmp_path, monkeypatch, scale_check_s=0.01)
    try:
        plane.deploy(stz_body())
        plane.clock.advance(STZ_DEFAULT_S)
        assert plane.wait(lambda: plane.phase() is Phase.DOWN, timeout=2)
        assert plane.engines[0].stopped
    finally:
        plane.control.shutdown()
