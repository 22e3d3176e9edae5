"""The event functions under functions-framework, on fakes: a poison request is acknowledged
(2xx) or refused (4xx), never a 5xx, which Pub/Sub and Eventarc would deliver again and again;
only a retryable failure is a 5xx."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from functions_framework import create_app

from modeldrop import bootstrap
from modeldrop.local.bridge import storage_event
from modeldrop.service.ports import DeployError
from tests.unit.service.fakes import BUCKET, make_harness
from tests.unit.service.test_poison import DEEP

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"
CE = {"ce-specversion": "1.0", "ce-type": "t", "ce-source": "//s", "ce-id": "1"}
JSON = {"Content-Type": "application/json"}
TOPIC = "/projects/p/topics/modeldrop-validated"


@pytest.fixture(scope="module")
def clients():
    return {
        name: create_app(name, str(FUNCTIONS / f"{name}.py"), "cloudevent").test_client()
        for name in ("validate", "deploy", "reconcile")
    }


@pytest.fixture
def h(tmp_path, monkeypatch):
    harness = make_harness(tmp_path)
    monkeypatch.setattr(bootstrap, "context", lambda: harness.ctx)
    return harness


def storage(data) -> tuple[bytes, dict[str, str]]:
    return json.dumps(data).encode(), {**CE, **JSON}


def path(function: str) -> str:
    """Where a function gets its events: Pub/Sub pushes go to a topic's path."""
    return "/" if function == "validate" else TOPIC


def envelope(message) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"message": message, "subscription": "s"}).encode(), JSON


def push(data: bytes | str, **fields) -> tuple[bytes, dict[str, str]]:
    encoded = base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()
    return envelope({"data": encoded, "messageId": "1", **fields})


POISON = {
    "validate": {
        "empty": (b"", CE),
        "not-json": (b"{x", {**CE, **JSON}),
        "json-list": (b"[1, 2]", JSON),
        "deep-json": (DEEP.encode(), JSON),
        "deep-data": (DEEP.encode(), {**CE, **JSON}),
        "deep-structured": (DEEP.encode(), {"Content-Type": "application/cloudevents+json"}),
        "data-list": storage([1]),
        "name-not-text": storage({"bucket": BUCKET, "name": 7}),
        "other-bucket": storage({"bucket": "elsewhere", "name": "models/m/config.json"}),
        "dotdot": storage({"bucket": BUCKET, "name": "models/../../x"}),
        "huge-name": storage({"bucket": BUCKET, "name": "models/m/" + "x" * 2_000_000}),
    },
    "deploy": {
        "deep-json": push(DEEP),
        "not-base64": envelope({"data": "%%%", "messageId": "1"}),
        "data-number": envelope({"data": 5, "messageId": "1"}),
        "attributes-list": push('{"deployment_id": "x-1"}', attributes=[1]),
        "message-list": envelope([1]),
        "id-list": push('{"deployment_id": ["x"]}'),
        "id-with-slash": push('{"deployment_id": "a/b"}'),
        "id-2mb": push(json.dumps({"deployment_id": "x" * 2_000_000})),
        "unknown-id": push('{"deployment_id": "nobody-0123456789ab"}'),
        "deep-envelope": (('{"message": ' + DEEP + "}").encode(), JSON),
    },
    "reconcile": {
        "tick": push("{}"),
        "garbage": push(b"\xff" * 100),
        "deep-envelope": (DEEP.encode(), JSON),
    },
}
CASES = [(f, *case) for f, cases in POISON.items() for case in cases.values()]
CASE_IDS = [f"{f}-{name}" for f, cases in POISON.items() for name in cases]


@pytest.mark.parametrize(("function", "body", "headers"), CASES, ids=CASE_IDS)
def test_a_poison_request_is_never_a_5xx(clients, h, function, body, headers):
    response = clients[function].post(path(function), data=body, headers=headers)
    assert response.status_code < 500, response.get_data()[:500]
    assert len(response.get_data()) < 2000
    assert h.store.rows == {}


def test_only_a_retryable_failure_is_a_5xx(clients, h, monkeypatch):
    from modeldrop.service import deploy

    failures = {
        "busy": DeployError("Vertex AI answered UNAVAILABLE", code="VERTEX_UNAVAILABLE",
                            retryable=True),
        "bug": RuntimeError("a bug"),
        "refused": DeployError("Vertex AI answered INVALID_ARGUMENT", code="VERTEX_INVALID"),
    }  # fmt: skip

    def on_validated(ctx, deployment_id):
        raise failures[deployment_id.split("-")[0]]

    monkeypatch.setattr(deploy, "on_validated", on_validated)
    statuses = {
        kind: clients["deploy"]
        .post(TOPIC, data=push(f'{{"deployment_id": "{kind}-1"}}')[0], headers=JSON)
        .status_code
        for kind in failures
    }
    assert statuses == {"busy": 500, "bug": 200, "refused": 200}


def notification(data: bytes) -> dict:
    """A push envelope of a GCS notification carrying `data`."""
    return {"message": {"attributes": {"eventType": "OBJECT_FINALIZE"},
                        "data": base64.b64encode(data).decode()}}  # fmt: skip


NOT_NOTIFICATIONS = {
    "none": None,
    "list": [1],
    "message-list": {"message": [1]},
    "deep": notification(DEEP.encode()),
    "not-text": notification(b'{"bucket": 1, "name": []}'),
    "not-json": notification(b"\xff"),
}


@pytest.mark.parametrize("pushed", NOT_NOTIFICATIONS.values(), ids=NOT_NOTIFICATIONS)
def test_the_local_bridge_acknowledges_what_is_no_gcs_notification(pushed):
    assert storage_event(pushed) is None
