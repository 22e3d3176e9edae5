"""GET /v1/deployments/{id}/logs on the fake harness: body, limit, errors in the api's style."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from modeldrop.api.app import handle
from modeldrop.domain.deployment import new_deployment
from modeldrop.errors import ModeldropError
from modeldrop.service.ports import LogEntry
from tests.unit.service.fakes import make_harness

app = Flask(__name__)
T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def call(h, path, method="GET", headers=None):
    with app.test_request_context(
        path, method=method, base_url="http://api.test", headers=headers or {}
    ):
        from flask import request

        response = handle(request, h.ctx)
        return response.status_code, json.loads(response.get_data() or b"null")


def lines(count: int) -> list[LogEntry]:
    """`count` entries, newest first."""
    return [
        LogEntry(
            at=(T0 - timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            severity="INFO" if i % 2 else "ERROR",
            text=f"line {count - i}",
        )
        for i in range(count)
    ]


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    record = new_deployment("bucket", "models/alpha", "f" * 64, 1, T0)
    assert harness.store.create(record)
    harness.record = record
    return harness


def test_the_newest_entries_come_back_newest_first(h):
    h.logs.entries[h.record.id] = lines(3)
    status, body = call(h, f"/v1/deployments/{h.record.id}/logs")
    assert status == 200
    assert body == {
        "deployment_id": h.record.id,
        "entries": [e.as_dict() for e in lines(3)],
    }
    assert [e["text"] for e in body["entries"]] == ["line 3", "line 2", "line 1"]


def test_limit_defaults_to_100_and_is_honoured(h):
    h.logs.entries[h.record.id] = lines(150)
    _, body = call(h, f"/v1/deployments/{h.record.id}/logs")
    assert len(body["entries"]) == 100
    _, body = call(h, f"/v1/deployments/{h.record.id}/logs?limit=2")
    assert [e["text"] for e in body["entries"]] == ["line 150", "line 149"]
    status, body = call(h, f"/v1/deployments/{h.record.id}/logs?limit=1000")
    assert status == 200 and len(body["entries"]) == 150


def test_a_deployment_without_a_log_has_no_entries(h):
    assert call(h, f"/v1/deployments/{h.record.id}/logs") == (
        200,
        {"deployment_id": h.record.id, "entries": []},
    )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "BAD_LIMIT"),
        ("limit=1001", "BAD_LIMIT"),
        ("limit=-1", "BAD_LIMIT"),
        ("limit=x", "BAD_LIMIT"),
        ("limit=1.5", "BAD_LIMIT"),
        ("limit=" + "9" * 5000, "BAD_LIMIT"),
        ("limit=1&limit=2", "BAD_QUERY"),
    ],
)
def test_a_bad_limit_is_a_400_with_code_and_hint(h, query, code):
    status, body = call(h, f"/v1/deployments/{h.record.id}/logs?{query}")
    assert status == 400
    assert body["error"]["code"] == code and body["error"]["status"] == 400
    assert body["error"]["message"] and body["error"]["hint"]


def test_an_unknown_deployment_is_a_404(h):
    status, body = call(h, "/v1/deployments/nobody-0123456789ab/logs")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body = call(h, f"/v1/deployments/{'x' * 2000}/logs")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


def test_an_unreadable_log_is_a_502_logs_unavailable_with_its_hint(h):
    h.logs.failure = ModeldropError(
        "Cloud Logging answered HTTP 403: denied",
        "Grant roles/logging.viewer.",
        code="LOGS_UNAVAILABLE",
    )
    status, body = call(h, f"/v1/deployments/{h.record.id}/logs")
    assert status == 502
    assert body["error"]["code"] == "LOGS_UNAVAILABLE"
    assert body["error"]["hint"] == "Grant roles/logging.viewer."


def test_an_unexpected_failure_is_a_500(h):
    h.logs.failure = RuntimeError("boom")
    status, body = call(h, f"/v1/deployments/{h.record.id}/logs")
    assert status == 500 and body["error"]["code"] == "INTERNAL"


def test_only_get_is_allowed(h):
    status, body = call(h, f"/v1/deployments/{h.record.id}/logs", method="POST")
    assert status == 405 and body["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_the_route_needs_the_bearer_token_when_tokens_are_set(tmp_path):
    h = make_harness(tmp_path, MODELDROP_API_TOKENS="secret-token")
    record = new_deployment("bucket", "models/alpha", "f" * 64, 1, T0)
    h.store.create(record)
    status, body = call(h, f"/v1/deployments/{record.id}/logs")
    assert status == 401 and body["error"]["code"]
    status, _ = call(
        h, f"/v1/deployments/{record.id}/logs", headers={"Authorization": "Bearer secret-token"}
    )
    assert status == 200


def test_importing_the_api_loads_neither_the_logging_adapter_nor_google_auth():
    code = (
        "import sys, modeldrop.api.app\n"
        "loaded = [m for m in ('modeldrop.adapters.serving_logs', 'google.auth') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
