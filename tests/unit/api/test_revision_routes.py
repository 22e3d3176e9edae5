"""The api's revision routes on fakes: a name answers from its serving revision (the header says
which), GET /v1/models/{name} shows `serving` and `revisions`, rollback and redeploy answer
with the reason when they cannot."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from modeldrop.api.app import handle
from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.lifecycle import start_delete
from modeldrop.service.reconcile import reconcile
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

app = Flask(__name__)
CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def call(h, method, path, body=None):
    data = json.dumps(body) if body is not None else None
    with app.test_request_context(path, method=method, data=data, content_type="application/json"):
        from flask import request

        response = handle(request, h.ctx)
        payload = b"".join(response.response) if response.is_streamed else response.get_data()
        return response, json.loads(payload or b"null")


def deployed(h, model):
    record = upload_all(h, model, name="alpha")[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    reconcile(h.ctx)
    return h.store.get(record.id)


@pytest.fixture
def h(tmp_path):
    harness = make_harness(
        tmp_path, MODELDROP_RETIRE_AFTER_SECONDS="600", MODELDROP_RECORD_CACHE_SECONDS="0"
    )
    harness.model = write_valid(tmp_path / "src")
    return harness


def test_the_name_answers_from_the_serving_revision(h):
    v1 = deployed(h, h.model)
    v2 = deployed(h, h.model)
    response, _ = call(h, "POST", "/v1/chat/completions", CHAT)
    assert response.status_code == 200 and response.headers["X-Modeldrop-Deployment"] == v2.id
    response, _ = call(h, "POST", f"/v1/deployments/{v1.id}/chat/completions", CHAT)
    assert response.headers["X-Modeldrop-Deployment"] == v1.id  # ids stay valid in the grace
    _, listed = call(h, "GET", "/v1/models")
    assert [(m["id"], m["deployment_id"]) for m in listed["data"]] == [("alpha", v2.id)]

    _, status = call(h, "GET", "/v1/models/alpha")
    assert status["id"] == v2.id and status["serving"] == v2.id
    shown = [(r["id"], r["state"]) for r in status["revisions"] if r["state"] != "SUPERSEDED"]
    assert shown == [(v2.id, "DEPLOYED"), (v1.id, "DEPLOYED")]  # newest first
    assert [r["revision"] for r in status["revisions"]] == sorted(
        (r["revision"] for r in status["revisions"]), reverse=True
    )
    assert "promotion_pending" not in status and status["deploy_round"] == 1


def test_rollback_and_its_refusals(h):
    response, body = call(h, "POST", "/v1/models/nope:rollback")
    assert response.status_code == 404
    v1 = deployed(h, h.model)
    response, body = call(h, "POST", "/v1/models/alpha:rollback")
    assert response.status_code == 409 and body["error"]["code"] == "NO_PREVIOUS_REVISION"
    v2 = deployed(h, h.model)
    response, body = call(h, "POST", "/v1/models/alpha:rollback")
    assert response.status_code == 200 and body["serving"] == v1.id
    response, _ = call(h, "POST", "/v1/chat/completions", CHAT)
    assert response.headers["X-Modeldrop-Deployment"] == v1.id
    start_delete(h.ctx, h.store.get(v2.id))
    response, body = call(h, "POST", "/v1/models/alpha:rollback")
    assert response.status_code == 409 and body["error"]["code"] == "PREVIOUS_NOT_DEPLOYED"
    assert v2.id in body["error"]["message"] and ":redeploy" in body["error"]["hint"]


def test_an_undeployed_serving_revision_answers_409_until_redeployed(h):
    v1 = deployed(h, h.model)
    start_delete(h.ctx, h.store.get(v1.id))
    response, body = call(h, "POST", "/v1/chat/completions", CHAT)
    assert response.status_code == 409 and body["error"]["code"] == "not_deployed"
    assert ":redeploy" in body["error"]["message"]
    _, listed = call(h, "GET", "/v1/models")
    assert listed["data"] == []

    response, body = call(h, "POST", f"/v1/deployments/{v1.id}:redeploy")
    assert response.status_code == 202 and body["state"] == "VALIDATED"
    assert body["deploy_round"] == 2
    response, body = call(h, "POST", f"/v1/deployments/{v1.id}:redeploy")
    assert response.status_code == 409 and body["error"]["code"] == "NOT_UNDEPLOYED"
    assert body["error"]["state"] == "VALIDATED"
    on_validated(h.ctx, v1.id)
    h.deployer.finish()
    reconcile(h.ctx)
    assert h.store.get(v1.id).state is State.DEPLOYED
    response, _ = call(h, "POST", "/v1/chat/completions", CHAT)
    assert response.status_code == 200 and response.headers["X-Modeldrop-Deployment"] == v1.id


def test_redeploy_of_a_changed_folder_is_folder_changed(h, tmp_path):
    v1 = deployed(h, h.model)
    start_delete(h.ctx, h.store.get(v1.id))
    (tmp_path / "buckets" / h.ctx.settings.bucket / v1.folder / "config.json").write_text("{}")
    response, body = call(h, "POST", f"/v1/deployments/{v1.id}:redeploy")
    assert response.status_code == 409 and body["error"]["code"] == "FOLDER_CHANGED"
    response, body = call(h, "POST", "/v1/deployments/nope:redeploy")
    assert response.status_code == 404
