"""The api's status routes on fakes: bodies, links, filters, pagination and JSON errors."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from modeldrop.api.app import handle
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

app = Flask(__name__)


def call(h, method, path, **kwargs):
    with app.test_request_context(path, method=method, base_url="http://api.test", **kwargs):
        from flask import request

        response = handle(request, h.ctx)
        return response.status_code, json.loads(response.get_data() or b"null")


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    model = write_valid(tmp_path / "src")
    upload_all(harness, model, name="alpha")
    upload_all(harness, model, name="beta")
    return harness


def test_health(h):
    assert call(h, "GET", "/healthz") == (200, {"status": "ok"})


def test_deployment_status_has_state_history_findings_and_links(h):
    record = h.store.latest_for_model("alpha")
    status, body = call(h, "GET", f"/v1/deployments/{record.id}")
    assert status == 200
    assert body["state"] == "VALIDATED" and body["matched_base"] == "Qwen2.5-0.5B"
    assert [t["state"] for t in body["history"]] == ["DETECTED", "VALIDATING", "VALIDATED"]
    assert body["machine"]["machine_type"] and isinstance(body["findings"], list)
    assert body["links"]["self"] == f"/v1/deployments/{record.id}"  # a path: no base URL set
    assert body["links"]["chat"] == f"/v1/deployments/{record.id}/chat/completions"
    assert "etag" not in body and "lease_expires_at" not in body


def test_model_status_is_the_newest_revision(h):
    status, body = call(h, "GET", "/v1/models/beta")
    assert status == 200 and body["model"] == "beta"


def test_list_filters_and_paginates(h):
    status, body = call(h, "GET", "/v1/deployments?limit=1")
    assert status == 200 and len(body["deployments"]) == 1 and body["next_page_token"]
    token = body["next_page_token"]
    _, second = call(h, "GET", f"/v1/deployments?limit=1&page_token={token}")
    assert second["deployments"][0]["id"] != body["deployments"][0]["id"]
    _, none = call(h, "GET", "/v1/deployments?state=DEPLOYED")
    assert none["deployments"] == []
    _, some = call(h, "GET", "/v1/deployments?state=validated,deployed&model=alpha")
    assert [d["model"] for d in some["deployments"]] == ["alpha"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/deployments/nope", 404, "NOT_FOUND"),
        ("GET", "/v1/models/nope", 404, "NOT_FOUND"),
        ("GET", "/v1/deployments?state=SLEEPING", 400, "BAD_FILTER"),
        ("GET", "/v1/deployments?limit=0", 400, "BAD_LIMIT"),
        ("GET", "/v1/deployments?limit=x", 400, "BAD_LIMIT"),
        ("GET", "/nowhere", 404, "NO_SUCH_ROUTE"),
        ("POST", "/healthz", 405, "METHOD_NOT_ALLOWED"),
    ],
)
def test_errors_are_json_with_code_and_hint(h, method, path, status, code):
    got, body = call(h, method, path)
    assert got == status and body["error"]["code"] == code and body["error"]["message"]
