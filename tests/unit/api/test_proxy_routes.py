"""The api's proxy, OpenAI, DELETE and auth behaviour on fakes (the real endpoint is covered
end to end on the local stack)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from flask import Flask

from modeldrop.api.app import handle
from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import UpstreamError, UpstreamTimeout
from modeldrop.service.reconcile import reconcile
from modeldrop.settings import Settings
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

app = Flask(__name__)


def call(h, method, path, body=None, raw=None, headers=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    with app.test_request_context(
        path, method=method, data=data, headers=headers or {}, content_type="application/json"
    ):
        from flask import request

        response = handle(request, h.ctx)
        payload = b"".join(response.response) if response.is_streamed else response.get_data()
        return response, payload


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    model = write_valid(tmp_path / "src")
    deployed = upload_all(harness, model, name="chatty")[-1]
    on_validated(harness.ctx, deployed.id)
    harness.deployer.finish()
    reconcile(harness.ctx)
    harness.deployed = harness.store.get(deployed.id)
    harness.pending = upload_all(harness, model, name="waiting")[-1]
    return harness


BIG = b'{"x": "' + b"a" * 2**21 + b'"}'
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def test_unary_chat_goes_to_the_recorded_endpoint(h):
    response, payload = call(h, "POST", f"/v1/deployments/{h.deployed.id}/chat/completions", CHAT)
    assert response.status_code == 200 and json.loads(payload)["choices"]
    kind, deployment_id, body = h.endpoints.calls[-1]
    assert (kind, deployment_id, body["model"]) == ("chat", h.deployed.id, h.deployed.vertex_id)


def test_stream_passes_chunks_and_ends_with_done(h):
    response, payload = call(
        h, "POST", f"/v1/deployments/{h.deployed.id}/chat/completions", {**CHAT, "stream": True}
    )
    assert response.mimetype == "text/event-stream"
    assert payload == h.endpoints.stream_chunks[0] + b"data: [DONE]\n\n"


def test_broken_stream_still_ends_cleanly(h):
    def breaking():
        yield b'data: {"n": 1}\n\n'
        raise UpstreamTimeout("cut", "")

    h.endpoints.stream_chunks = breaking()
    _, payload = call(
        h, "POST", f"/v1/deployments/{h.deployed.id}/chat/completions", {**CHAT, "stream": True}
    )
    assert payload.startswith(b'data: {"n": 1}') and b"UPSTREAM_TIMEOUT" in payload
    assert payload.endswith(b"data: [DONE]\n\n")


def test_predict_and_stream_raw_predict(h):
    body = {"instances": [{"prompt": "hi", "max_tokens": 4}, {"prompt": "yo"}]}
    response, payload = call(h, "POST", f"/v1/deployments/{h.deployed.id}:predict", body)
    assert response.status_code == 200 and len(json.loads(payload)["predictions"]) == 2
    response, payload = call(h, "POST", f"/v1/deployments/{h.deployed.id}:streamRawPredict", body)
    assert response.status_code == 200 and payload.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("path", "body", "raw", "status", "code"),
    [
        ("/v1/deployments/nope/chat/completions", CHAT, None, 404, "NOT_FOUND"),
        ("{pending}/chat/completions", CHAT, None, 409, "NOT_DEPLOYED"),
        ("{deployed}/chat/completions", None, b"{not json", 400, "MALFORMED_JSON"),
        ("{deployed}/chat/completions", None, b"[1, 2]", 400, "MALFORMED_JSON"),
        ("{deployed}/chat/completions", None, BIG, 413, "BODY_TOO_LARGE"),
        ("{deployed}:predict", {"instances": []}, None, 400, "BAD_INSTANCES"),
        ("{deployed}:predict", {"prompt": "x"}, None, 400, "BAD_INSTANCES"),
    ],
)
def test_request_errors(h, path, body, raw, status, code):
    path = path.format(
        deployed=f"/v1/deployments/{h.deployed.id}", pending=f"/v1/deployments/{h.pending.id}"
    )
    response, payload = call(h, "POST", path, body, raw)
    error = json.loads(payload)["error"]
    assert (response.status_code, error["code"]) == (status, code)
    assert error["message"] and error["hint"]
    if code == "NOT_DEPLOYED":
        assert error["state"] == "VALIDATED"


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (UpstreamError(503, b'{"error": "overloaded"}', "u"), 502, "UPSTREAM_ERROR"),
        (UpstreamError(404, b'{"error": "no endpoint"}', "u"), 502, "UPSTREAM_ERROR"),
        (UpstreamError(422, b'{"error": "bad top_p"}', "u"), 422, "UPSTREAM_REJECTED"),
        (UpstreamError(429, b'{"error": "slow down"}', "u"), 429, "UPSTREAM_REJECTED"),
        (UpstreamTimeout("slow", "hint"), 504, "UPSTREAM_TIMEOUT"),
    ],
)
def test_upstream_failures(h, failure, status, code):
    h.endpoints.failure = failure
    response, payload = call(h, "POST", f"/v1/deployments/{h.deployed.id}/chat/completions", CHAT)
    error = json.loads(payload)["error"]
    assert (response.status_code, error["code"]) == (status, code)
    if code.startswith("UPSTREAM_") and code != "UPSTREAM_TIMEOUT":
        assert error["upstream_status"] == failure.status and error["upstream_body"]


def test_openai_route_passes_rate_limits_in_openai_shape(h):
    h.endpoints.failure = UpstreamError(429, b'{"error": "slow down"}', "u")
    response, payload = call(h, "POST", "/v1/chat/completions", {**CHAT, "model": "chatty"})
    error = json.loads(payload)["error"]
    assert response.status_code == 429 and error["type"] == "rate_limit_error"


def test_openai_models_and_chat_by_name_or_id(h):
    response, payload = call(h, "GET", "/v1/models")
    listed = json.loads(payload)
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["chatty"]
    for model in ("chatty", h.deployed.id):
        response, _ = call(h, "POST", "/v1/chat/completions", {**CHAT, "model": model})
        assert response.status_code == 200
        assert h.endpoints.calls[-1][2]["model"] == h.deployed.vertex_id


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("nope", 404, "model_not_found"),
        ("waiting", 409, "not_deployed"),
        (None, 400, "model_required"),
    ],
)
def test_openai_errors_have_openai_shape(h, model, status, code):
    response, payload = call(h, "POST", "/v1/chat/completions", {**CHAT, "model": model})
    error = json.loads(payload)["error"]
    assert response.status_code == status
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code


def test_delete_undeploys_then_the_record_is_undeployed(h):
    response, payload = call(h, "DELETE", f"/v1/deployments/{h.deployed.id}")
    assert response.status_code == 200 and json.loads(payload)["state"] == "UNDEPLOYED"
    assert h.deployer.endpoints == {}
    assert [s for _, s in h.events.published if _ == h.deployed.id][-2:] == [
        "UNDEPLOYING",
        "UNDEPLOYED",
    ]
    response, payload = call(h, "DELETE", f"/v1/deployments/{h.deployed.id}")
    assert response.status_code == 200  # deleting again is a no-op


def test_delete_cancels_a_pending_upload_and_refuses_mid_deploy(h):
    _, payload = call(h, "DELETE", f"/v1/deployments/{h.pending.id}")
    assert json.loads(payload)["state"] == "SUPERSEDED"
    stored = h.store.get(h.deployed.id)
    row, version = h.store.rows[stored.id]
    h.store.rows[stored.id] = (replace(row, state=State.DEPLOYING), version)
    response, payload = call(h, "DELETE", f"/v1/deployments/{h.deployed.id}")
    assert (
        response.status_code == 409 and json.loads(payload)["error"]["code"] == "DEPLOY_IN_PROGRESS"
    )


def test_deploying_record_is_refreshed_when_read(tmp_path):
    h = make_harness(tmp_path)
    record = upload_all(h, write_valid(tmp_path / "src"), name="slow")[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    _, payload = call(h, "GET", f"/v1/deployments/{record.id}")
    assert json.loads(payload)["state"] == "DEPLOYED"  # without waiting for reconcile


def test_bearer_tokens(h):
    h.ctx.settings = Settings.from_env({"MODELDROP_API_TOKENS": "s3cret,other"})
    path = f"/v1/deployments/{h.deployed.id}"
    assert call(h, "GET", path)[0].status_code == 401
    assert call(h, "GET", path, headers={"Authorization": "Bearer wrong"})[0].status_code == 401
    assert call(h, "GET", path, headers={"Authorization": "Bearer other"})[0].status_code == 200
    assert call(h, "GET", "/healthz")[0].status_code == 200
    response, payload = call(h, "GET", "/v1/models")
    assert (
        response.status_code == 401
        and json.loads(payload)["error"]["type"] == "authentication_error"
    )


def test_logs_carry_no_tokens_or_bodies(h):
    import io
    import logging

    from modeldrop.logs import CloudLoggingFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(CloudLoggingFormatter())
    logger = logging.getLogger("modeldrop")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        h.ctx.settings = Settings.from_env({"MODELDROP_API_TOKENS": "tok-XYZ"})
        secret = {"messages": [{"role": "user", "content": "my-secret-prompt"}]}
        call(
            h,
            "POST",
            f"/v1/deployments/{h.deployed.id}/chat/completions",
            secret,
            headers={"Authorization": "Bearer tok-XYZ"},
        )
        call(
            h,
            "POST",
            "/v1/chat/completions",
            {**secret, "model": "nope"},
            headers={"Authorization": "Bearer wrong-token"},
        )
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "chat/completions -> 200" in text and "-> 401" in text
    assert "tok-XYZ" not in text and "wrong-token" not in text and "my-secret-prompt" not in text


def test_deployed_record_is_reused_briefly_and_dropped_on_delete(h):
    path = f"/v1/deployments/{h.deployed.id}/chat/completions"
    assert call(h, "POST", path, CHAT)[0].status_code == 200
    row = h.store.rows.pop(h.deployed.id)  # a second read would now find nothing
    assert call(h, "POST", path, CHAT)[0].status_code == 200  # served from the cache
    h.store.rows[h.deployed.id] = row
    call(h, "DELETE", f"/v1/deployments/{h.deployed.id}")
    response, payload = call(h, "POST", path, CHAT)
    assert response.status_code == 409 and json.loads(payload)["error"]["state"] == "UNDEPLOYED"


def test_cache_expires_and_can_be_turned_off():
    from modeldrop.api.cache import DeployedCache

    now = [0.0]
    cache = DeployedCache(5, clock=lambda: now[0])
    record = object()
    cache.put("a", record)
    assert cache.get("a") is record
    now[0] = 6
    assert cache.get("a") is None
    off = DeployedCache(0)
    off.put("a", record)
    assert off.get("a") is None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/deployments/{id}/chat/completions", CHAT),
        ("/v1/deployments/{id}/chat/completions", {**CHAT, "stream": True}),
        ("/v1/deployments/{id}:predict", {"instances": [{"prompt": "hi"}]}),
        ("/v1/deployments/{id}:streamRawPredict", {"instances": [{"prompt": "hi"}]}),
        ("/v1/chat/completions", {**CHAT, "model": "chatty"}),
        ("/v1/chat/completions", {**CHAT, "model": "chatty", "stream": True}),
    ],
)
def test_every_answer_names_the_deployment_that_gave_it(h, path, body):
    response, payload = call(h, "POST", path.format(id=h.deployed.id), body)
    assert response.status_code == 200 and payload
    assert response.headers["X-Modeldrop-Deployment"] == h.deployed.id
