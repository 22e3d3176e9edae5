"""The event functions under functions-framework, on fakes: a poison request is acknowledged
(2xx) or refused (4xx), never a 5xx, which Pub/Sub and Eventarc would deliver again and again;
only a retryable failure is a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
from functions_framework import create_app

from modeldrop import bootstrap
from modeldrop.local.bridge import storage_event
from modeldrop.service.ports import DeployError
from tests.fixtures.poison_events import (
    CASE_IDS,
    CASES,
    JSON,
    NOT_NOTIFICATIONS,
    TOPIC,
    path,
    push,
)
from tests.unit.service.fakes import make_harness

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


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


@pytest.mark.parametrize(("function", "body", "headers"), CASES, ids=CASE_IDS)
def test_a_poison_request_is_never_a_5xx(clients, h, function, body, headers):
    response = clients[function].post(path(function), data=body, headers=headers)
    assert response.status_code < 500, response.get_data()[:500]
    assert len(response.get_data()) < 2000
    assert h.store.rows == {}


def test_only_a_retryable_failure_is_a_5xx(clients, h, monkeypatch):
    from modeldrop.service import deploy

    failures = {
        "busy": DeployError(
            "Vertex AI answered UNAVAILABLE", code="VERTEX_UNAVAILABLE", retryable=True
        ),
        "bug": RuntimeError("a bug"),
        "refused": DeployError("Vertex AI answered INVALID_ARGUMENT", code="VERTEX_INVALID"),
    }

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


@pytest.mark.parametrize("pushed", NOT_NOTIFICATIONS.values(), ids=NOT_NOTIFICATIONS)
def test_the_local_bridge_acknowledges_what_is_no_gcs_notification(pushed):
    assert storage_event(pushed) is None
