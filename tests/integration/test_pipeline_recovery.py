"""The handlers on the real emulators and the local Vertex emulator, driven in-process.

What the whole-stack tests cannot steer: marker mode, a crash between the Deploy call and its
record, Vertex AI faults at the deploy call, storage failing every time, and the Pub/Sub
emulator restarting mid-flow.
Each test gets its own collection, topics and folder prefix, so nothing else touches its records.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from modeldrop.adapters.pubsub_admin import ensure_subscription, ensure_topic
from modeldrop.adapters.pubsub_events import parse_event
from modeldrop.adapters.pubsub_queue import read_validated
from modeldrop.adapters.vertex_deployer import VertexDeployer
from modeldrop.bootstrap import build_context
from modeldrop.domain.deployment import State
from modeldrop.errors import AccessError
from modeldrop.local.emulators import pubsub_emulator
from modeldrop.local.uploader import upload_folder
from modeldrop.local.vertex import VertexEmulator
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import DeployError
from modeldrop.service.reconcile import reconcile
from modeldrop.service.validate import on_object_finalized
from modeldrop.settings import SETTINGS, Settings
from tests.fixtures.vertex import MISSING_SERVING, SKIP_SERVING

ATTEMPTS = int(SETTINGS["max_attempts"].default)

BUCKET = "pipeline-recovery"
COUNTER = itertools.count()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if MISSING_SERVING:
        pytest.skip(SKIP_SERVING)
    from modeldrop.local.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def vertex(fake_gcs, tmp_path_factory):
    with (
        VertexEmulator(
            engine="transformers", cache_dir=tmp_path_factory.mktemp("v"), faults=""
        ) as v,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("REQUESTS_CA_BUNDLE", str(v.ca_path))  # the smoke test's https, as the stack's
        yield v


@pytest.fixture
def harness(firestore_emulator, pubsub_emulator, fake_gcs, vertex, tiny):
    return Harness(vertex, tiny)


class Harness:
    """A Context on the emulators with names of its own, and a pull subscriber on its topics."""

    def __init__(self, vertex: VertexEmulator, tiny: Path, **overrides: str) -> None:
        n = next(COUNTER)
        self.tiny = tiny
        self.prefix = f"inproc-{n}/"
        env = {
            "MODELDROP_BUCKET": BUCKET,
            "MODELDROP_ROOT_PREFIX": self.prefix,
            "MODELDROP_COLLECTION": f"recovery-{n}-{time.time_ns()}",
            "MODELDROP_VALIDATED_TOPIC": f"validated-{n}",
            "MODELDROP_EVENTS_TOPIC": f"events-{n}",
            "MODELDROP_SETTLE_SECONDS": "0",
            "MODELDROP_BASE_POLICY": "family",
            "MODELDROP_LEASE_SECONDS": "1",
            "MODELDROP_PUBLISH_TIMEOUT": "3",
            "MODELDROP_VERTEX_API_ENDPOINT": vertex.url,
            "MODELDROP_VERTEX_ANONYMOUS": "true",
            "GOOGLE_CLOUD_PROJECT": "modeldrop-local",
            **overrides,
        }
        self.settings = Settings.from_env(env)
        self.vertex = vertex
        self.provision()
        self.ctx = build_context(self.settings)

    def provision(self) -> None:
        from google.cloud import pubsub_v1

        from modeldrop.adapters.gcs_folder import default_client

        storage = default_client()
        if storage.lookup_bucket(BUCKET) is None:
            with contextlib.suppress(Exception):
                storage.create_bucket(BUCKET)
        publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        s = self.settings
        self.subscriptions = {}
        for topic in (s.validated_topic, s.events_topic):
            ensure_topic(publisher, s.project, topic)
            self.subscriptions[topic] = ensure_subscription(
                self.subscriber, s.project, f"{topic}-pull", topic
            )

    def pull(self, topic: str) -> list[Any]:
        response = self.subscriber.pull(
            request={"subscription": self.subscriptions[topic], "max_messages": 50}, timeout=5
        )
        if response.received_messages:
            self.subscriber.acknowledge(
                request={
                    "subscription": self.subscriptions[topic],
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        return [m.message for m in response.received_messages]

    def upload(self, folder, name: str, order: list[str] | None = None) -> list[Any]:
        """Upload file by file and run validate for each object, like the finalize events."""
        from modeldrop.adapters.gcs_folder import default_client

        names = order or sorted(p.name for p in folder.iterdir())
        results = []
        for file_name in names:
            (obj,) = upload_folder(
                default_client(), folder, BUCKET, f"{self.prefix}{name}", [file_name]
            )
            results.append(on_object_finalized(self.ctx, BUCKET, obj))
        return results

    def deploy_queued(self) -> list[Any]:
        return [
            on_validated(self.ctx, read_validated(m))
            for m in self.pull(self.settings.validated_topic)
        ]

    def until(self, deployment_id: str, state: State, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.ctx.store.get(deployment_id)
            if record.state is state:
                return record
            reconcile(self.ctx)
            time.sleep(0.2)
        raise AssertionError(f"{deployment_id} stuck in {self.ctx.store.get(deployment_id).state}")


def test_marker_mode_waits_for_the_marker_then_deploys(
    firestore_emulator, pubsub_emulator, fake_gcs, vertex, tiny, tmp_path
):
    h = Harness(vertex, tiny, MODELDROP_COMPLETION_MODE="marker")
    assert h.upload(tiny, "marked") == [None] * len(list(tiny.iterdir()))
    marker = tmp_path / "_READY"
    marker.write_text("")
    (record,) = h.upload(tmp_path, "marked", ["_READY"])
    assert record.state is State.VALIDATED
    (deploying,) = h.deploy_queued()
    assert deploying.state is State.DEPLOYING
    assert h.until(record.id, State.DEPLOYED).endpoint_dns == vertex.dedicated_dns


def test_marker_with_missing_files_is_rejected_at_once(
    firestore_emulator, pubsub_emulator, fake_gcs, vertex, tiny, tmp_path
):
    h = Harness(vertex, tiny, MODELDROP_COMPLETION_MODE="marker")
    (tmp_path / "_READY").write_text("")
    (tmp_path / "config.json").write_text((tiny / "config.json").read_text())
    results = h.upload(tmp_path, "half", ["config.json", "_READY"])
    assert results[0] is None and results[1].state is State.REJECTED
    assert results[1].error["code"] in {"TOKENIZER_MISSING", "WEIGHTS_MISSING"}


class CrashAfterDeploy(VertexDeployer):
    def deploy(self, deployment):
        super().deploy(deployment)
        raise SystemExit("the function instance died after Vertex AI took the deploy")


def test_crash_between_deploy_and_record_creates_no_second_endpoint(harness):
    h = harness
    record = h.upload(h.tiny, "crashy")[-1]
    real = h.ctx.deployer
    h.ctx.deployer = CrashAfterDeploy(h.settings)
    with pytest.raises(SystemExit):
        h.deploy_queued()
    h.ctx.deployer = real
    stuck = h.ctx.store.get(record.id)
    assert stuck.state is State.DEPLOYING and not stuck.operation and not stuck.endpoint
    time.sleep(1.1)  # the claim's lease expires
    deployed = h.until(record.id, State.DEPLOYED)
    state = requests.get(f"{h.vertex.url}/emulator/state", timeout=10).json()
    assert [e["name"] for e in state["endpoints"]].count(deployed.endpoint) == 1


def inject(vertex: VertexEmulator, status: int, count: int = 1) -> None:
    fault = {"status": status, "count": count, "routes": ["deploy"]}
    requests.post(f"{vertex.url}/emulator/faults", json=fault, timeout=10).raise_for_status()


def test_retryable_vertex_error_is_redelivered_and_recovers(harness):
    h = harness
    record = h.upload(h.tiny, "flaky")[-1]
    inject(h.vertex, 503)
    message = h.pull(h.settings.validated_topic)[0]
    with pytest.raises(DeployError) as caught:
        on_validated(h.ctx, read_validated(message))
    assert caught.value.retryable
    redelivered = on_validated(h.ctx, read_validated(message))  # Pub/Sub redelivers it
    assert redelivered.state is State.DEPLOYING and redelivered.operation
    h.until(record.id, State.DEPLOYED)


def test_permanent_vertex_error_fails_with_hint_and_notification(harness):
    h = harness
    record = h.upload(h.tiny, "denied")[-1]
    inject(h.vertex, 403)
    (failed,) = h.deploy_queued()
    assert failed.state is State.FAILED
    assert failed.error["code"] == "VERTEX_PERMISSION_DENIED"
    assert "roles/aiplatform.user" in failed.error["hint"]
    events = [parse_event(m) for m in h.pull(h.settings.events_topic)]
    failure = [e for e in events if e["subject"] == record.id and e["type"].endswith(".failed")]
    assert len(failure) == 1 and failure[0].data["error"]["code"] == "VERTEX_PERMISSION_DENIED"


def test_storage_failing_every_time_ends_failed_after_the_last_attempt(harness):
    h = harness
    open_folder = h.ctx.open_folder

    def config_unreadable(uri):
        folder = open_folder(uri)
        read_range = folder.read_range

        def read(name, start, length):
            if name == "config.json":
                raise AccessError("Cannot read config.json.", "Check the bucket.")
            return read_range(name, start, length)

        folder.read_range = read
        return folder

    h.ctx.open_folder = config_unreadable
    with pytest.raises(AccessError):  # to be delivered again
        h.upload(h.tiny, "unreadable")
    (record,), _ = h.ctx.store.list_page()
    assert (record.state, record.claims, record.error["code"]) == (
        State.VALIDATING,
        1,
        "ACCESS_ERROR",
    )
    failed = h.until(record.id, State.FAILED)
    assert failed.error["code"] == "ACCESS_ERROR" and str(ATTEMPTS) in failed.error["hint"]
    events = [m.attributes["state"] for m in h.pull(h.settings.events_topic)]
    assert events == ["DETECTED", "VALIDATING", "FAILED"]


def test_pubsub_restart_mid_flow_loses_no_deployment(
    firestore_emulator, fake_gcs, vertex, tiny, monkeypatch
):
    own = pubsub_emulator().start().wait_ready(60)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", own.host)
    try:
        h = Harness(vertex, tiny)
        own.stop()  # Pub/Sub goes away before validation publishes anything
        record = h.upload(tiny, "through-outage")[-1]
        assert record.state is State.VALIDATED
        stored = h.ctx.store.get(record.id)
        assert stored.event_pending  # the notification could not be sent
        own = pubsub_emulator(own.port).start().wait_ready(60)  # back, but empty
        h.provision()
        time.sleep(1.1)  # the VALIDATED lease expires
        reconcile(h.ctx)  # re-queues the deploy and re-sends the notification
        # the publisher may also deliver its own retry of the first message once Pub/Sub is
        # back: at least once, and every copy names this deployment
        queued = h.deploy_queued()
        assert queued and {d.id for d in queued} == {record.id}
        h.until(record.id, State.DEPLOYED)
        events = {m.attributes["state"] for m in h.pull(h.settings.events_topic)}
        assert {"VALIDATED", "DEPLOYING", "DEPLOYED"} <= events
    finally:
        own.stop()
