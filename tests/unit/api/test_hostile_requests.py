"""Hostile and odd requests on fakes: each is a 4xx with a stable code, a short message quoting
at most an excerpt of the input, and a hint; never a 500. Links never follow the Host header."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from modeldrop.api.app import handle
from modeldrop.service.deploy import on_validated
from modeldrop.service.reconcile import reconcile
from modeldrop.settings import Settings
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

app = Flask(__name__)
LONG = "a" * 2000  # Firestore refuses it as a queried value or a document id
WIDE = "é" * 600  # 600 characters, 1,200 bytes: over the 1,024-byte bound
CHAT = {"messages": [{"role": "user", "content": "hello"}]}
MESSAGE_CHARS = 400  # a message quotes an excerpt of the input, never all of it


class CountingStore:
    """The fake store, counting the calls made to it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.store, name)


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    record = upload_all(harness, write_valid(tmp_path / "src"), name="chatty")[-1]
    on_validated(harness.ctx, record.id)
    harness.deployer.finish()
    reconcile(harness.ctx)
    harness.deployed = harness.store.get(record.id)
    harness.ctx.store = CountingStore(harness.store)
    return harness


def call(h, method: str, path: str, body: Any = None, raw: bytes | None = None, **kwargs: Any):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    with app.test_request_context(
        path, method=method, data=data, content_type="application/json", **kwargs
    ):
        from flask import request

        response = handle(request, h.ctx)
        payload = b"".join(response.response) if response.is_streamed else response.get_data()
        return response.status_code, json.loads(payload)


def nested(depth: int) -> bytes:
    """A chat body whose objects and arrays nest `depth` levels (the body itself is one)."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return b'{"messages": [{"role": "user", "content": "hi"}], "x": [' + inner.encode() + b"]}"


ONE = "/v1/deployments/{id}"
# (method, path, raw body, status, code, store calls allowed). {id} is the DEPLOYED record.
HOSTILE = [
    ("GET", f"/v1/models/{LONG}", None, 404, "NOT_FOUND", False),
    ("GET", f"/v1/models/{WIDE}", None, 404, "NOT_FOUND", False),
    ("GET", "/v1/models/%FF%FE", None, 404, "NOT_FOUND", True),  # not UTF-8: replaced
    ("GET", ONE.format(id=LONG), None, 404, "NOT_FOUND", False),
    ("GET", ONE.format(id=".."), None, 404, "NOT_FOUND", False),
    ("GET", ONE.format(id="."), None, 404, "NOT_FOUND", False),
    ("GET", ONE.format(id="__name__"), None, 404, "NOT_FOUND", False),
    ("GET", ONE.format(id="a%2Fb"), None, 404, "NO_SUCH_ROUTE", False),
    ("GET", ONE.format(id="%00"), None, 404, "NOT_FOUND", True),
    ("GET", ONE.format(id="caf%C3%A9"), None, 404, "NOT_FOUND", True),
    ("DELETE", ONE.format(id=LONG), None, 404, "NOT_FOUND", False),
    ("DELETE", ONE.format(id=".."), None, 404, "NOT_FOUND", False),
    ("POST", f"{ONE.format(id=LONG)}/chat/completions", b"{}", 404, "NOT_FOUND", False),
    ("POST", f"{ONE.format(id=WIDE)}:predict", b"{}", 404, "NOT_FOUND", False),
    ("POST", f"{ONE.format(id='__x__')}:streamRawPredict", b"{}", 404, "NOT_FOUND", False),
    ("GET", f"/v1/deployments?model={LONG}", None, 400, "BAD_FILTER", False),
    ("GET", f"/v1/deployments?state={'x' * 5000}", None, 400, "BAD_FILTER", False),
    ("GET", "/v1/deployments?page_token=%21%21", None, 400, "BAD_PAGE_TOKEN", True),
    ("GET", "/v1/deployments?page_token=%FF%FE", None, 400, "BAD_PAGE_TOKEN", True),
    ("GET", "/v1/deployments?state=%FF%FE", None, 400, "BAD_FILTER", False),
    ("GET", "/v1/deployments?limit=1&limit=2", None, 400, "BAD_QUERY", False),
    ("GET", "/v1/deployments?state=FAILED&state=DEPLOYED", None, 400, "BAD_QUERY", False),
    ("GET", f"/v1/deployments?limit={'9' * 5000}", None, 400, "BAD_LIMIT", False),
    ("GET", "/v1/deployments?limit=99999999999999999999", None, 400, "BAD_LIMIT", False),
    ("GET", "/v1/deployments?limit=1e3", None, 400, "BAD_LIMIT", False),
    ("POST", f"{ONE}/chat/completions", nested(100_000), 400, "BODY_TOO_DEEP", True),
    ("POST", f"{ONE}/chat/completions", nested(65), 400, "BODY_TOO_DEEP", True),
    ("POST", f"{ONE}:predict", b'{"instances": [{"n": 1e999}]}', 400, "BAD_NUMBER", True),
    ("POST", f"{ONE}:predict", b'{"instances": [{"n": NaN}]}', 400, "BAD_NUMBER", True),
    ("POST", f"{ONE}:predict", b'{"n": -Infinity}', 400, "BAD_NUMBER", True),
    ("POST", f"{ONE}:predict", b'{"n": ' + b"7" * 5000 + b"}", 400, "BAD_NUMBER", True),
    ("POST", f"{ONE}/chat/completions", b'{"a": "\xff\xfe"}', 400, "MALFORMED_JSON", True),
    ("POST", f"{ONE}/chat/completions", b"\xff" * 10, 400, "MALFORMED_JSON", True),
]


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "code", "store_calls"),
    HOSTILE,
    ids=[f"{row[0]} {row[1][:48]} {row[4]}" for row in HOSTILE],
)
def test_hostile_request_is_a_clear_4xx(h, method, path, raw, status, code, store_calls):
    got, body = call(h, method, path.format(id=h.deployed.id), raw=raw)
    error = body["error"]
    assert (got, error["code"]) == (status, code), error
    assert error["message"] and error["hint"] and len(error["message"]) < MESSAGE_CHARS
    if not store_calls:  # refused before any store call
        assert h.ctx.store.calls == []


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        (LONG, 404, "model_not_found"),
        (WIDE, 404, "model_not_found"),
        ("\ud800", 404, "model_not_found"),  # a lone surrogate: not UTF-8
        ("a/b", 404, "model_not_found"),  # not an id: looked up as a name only
        (42, 400, "model_required"),
        (["chatty"], 400, "model_required"),
        ({"name": {"deeper": [1, 2, 3]}}, 400, "model_required"),
        (True, 400, "model_required"),
        ("", 400, "model_required"),
    ],
)
def test_openai_model_of_any_shape_is_a_4xx_in_openai_shape(h, model, status, code):
    got, body = call(h, "POST", "/v1/chat/completions", {**CHAT, "model": model})
    error = body["error"]
    assert (got, error["code"]) == (status, code), error
    assert set(error) == {"message", "type", "param", "code"} and len(error["message"]) < 500
    if status == 404 and model != "a/b":  # no model name can be it: the store is not asked
        assert h.ctx.store.calls == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [(nested(100_000), "body_too_deep"), (b'{"model": "chatty", "t": 1e400}', "bad_number")],
)
def test_openai_body_errors_have_openai_shape(h, raw, code):
    got, body = call(h, "POST", "/v1/chat/completions", raw=raw)
    assert (got, body["error"]["code"], body["error"]["type"]) == (
        400,
        code,
        "invalid_request_error",
    )


def test_the_bounds_themselves_are_accepted(h):
    """64 levels of nesting, 100-digit integers, 1,024-byte names: still served."""
    path = f"/v1/deployments/{h.deployed.id}/chat/completions"
    assert call(h, "POST", path, raw=nested(64))[0] == 200
    digits = b'{"messages": [], "seed": ' + b"9" * 100 + b"}"
    assert call(h, "POST", path, raw=digits)[0] == 200
    h.ctx.store.calls.clear()
    got, _ = call(h, "GET", "/v1/models/" + "é" * 512)  # 1,024 bytes: asked, not found
    assert (got, h.ctx.store.calls) == (404, ["latest_for_model"])
    assert call(h, "GET", "/v1/deployments?limit=200&model=chatty")[0] == 200


def test_a_long_input_is_quoted_as_an_excerpt(h):
    _, body = call(h, "GET", f"/v1/deployments/{'x' * 100_000}")
    message = body["error"]["message"]
    assert message.startswith("Deployment 'xxx") and "100000 in all" in message
    assert len(message) < MESSAGE_CHARS


LINKED = ["/v1/deployments/{id}", "/v1/deployments", "/v1/models/chatty"]


@pytest.mark.parametrize("path", LINKED)
def test_a_hostile_host_header_never_reaches_a_link(h, path):
    got, body = call(
        h,
        "GET",
        path.format(id=h.deployed.id),
        base_url="http://evil.example",
        headers={"X-Forwarded-Host": "evil.example"},
    )
    assert got == 200 and "evil.example" not in json.dumps(body)
    record = body["deployments"][0] if "deployments" in body else body
    assert record["links"]["self"] == f"/v1/deployments/{h.deployed.id}"
    assert record["links"]["model"] == "/v1/models/chatty"


def test_links_start_with_the_configured_base_url(h):
    h.ctx.settings = Settings.from_env({"MODELDROP_API_BASE_URL": "https://api.example.com/md/"})
    got, body = call(h, "DELETE", f"/v1/deployments/{h.deployed.id}", base_url="http://evil.x")
    assert got == 200 and "evil.x" not in json.dumps(body)
    assert body["links"]["chat"] == (
        f"https://api.example.com/md/v1/deployments/{h.deployed.id}/chat/completions"
    )


def test_names_in_links_are_percent_encoded(h):
    from dataclasses import replace

    from modeldrop.api.views import status_body

    links = status_body(replace(h.deployed, model="a b#?%/c"), "", h.clock())["links"]
    assert links["model"] == "/v1/models/a%20b%23%3F%25%2Fc"
