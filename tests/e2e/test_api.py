"""The api function on the local stack: status URL, proxied queries to a real engine, the
official `openai` client, DELETE to UNDEPLOYED, and hostile requests (4xx, never 500)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from tests.fixtures.local_stack import upload, wait_state


@pytest.fixture(scope="module")
def served(stack, tiny_model):
    upload(stack, tiny_model, "api-chat")
    status = wait_state(stack, "api-chat")
    assert status["state"] == "DEPLOYED", status
    return status


def follow(stack, link: str) -> str:
    """The URL of a link in an answer: a path on the api unless MODELDROP_API_BASE_URL is set."""
    return urljoin(f"{stack.urls['api']}/", link)


def sse_data(response: requests.Response) -> list[str]:
    return [
        line[6:] for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")
    ]


def test_status_url_links_and_chat_through_the_api(stack, served):
    status = requests.get(follow(stack, served["links"]["self"]), timeout=10).json()
    chat = follow(stack, status["links"]["chat"])
    assert status["state"] == "DEPLOYED"
    assert chat == f"{stack.urls['api']}/v1/deployments/{status['id']}/chat/completions"
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 6,
        "temperature": 0,
        "ignore_eos": True,
    }
    answer = requests.post(chat, json=body, timeout=60).json()
    assert answer["usage"]["completion_tokens"] == 6


def test_streamed_chat_arrives_in_chunks_and_ends_with_done(stack, served):
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    chat = follow(stack, served["links"]["chat"])
    with requests.post(chat, json=body, stream=True, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_data(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 2 and all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_predict_and_stream_raw_predict_bodies_from_the_seed(stack, served):
    base = f"{stack.urls['api']}/v1/deployments/{served['id']}"
    instance = {
        "prompt": "How to tell the time by looking at the sky?",
        "temperature": 0,
        "top_p": 1,
        "max_tokens": 8,
        "ignore_eos": True,
    }
    predictions = requests.post(
        f"{base}:predict", json={"instances": [instance]}, timeout=60
    ).json()
    assert predictions["predictions"][0].startswith("Prompt:\nHow to tell the time")
    streamed = {"instances": [{**instance, "stream": True}]}
    with requests.post(
        f"{base}:streamRawPredict", json=streamed, stream=True, timeout=60
    ) as response:
        events = sse_data(response)
    assert events[-1] == "[DONE]" and len(events) >= 2


def test_official_openai_client(stack, served):
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.urls['api']}/v1", api_key="unused-locally")
    assert "api-chat" in [m.id for m in client.models.list().data]
    completion = client.chat.completions.create(
        model="api-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0
    )
    assert completion.choices[0].message.role == "assistant"
    assert 1 <= completion.usage.completion_tokens <= 5
    stream = client.chat.completions.create(
        model=served["id"],
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0,
        stream=True,
    )
    pieces = [c for c in stream if c.choices and c.choices[0].delta.content]
    assert 1 <= len(pieces) <= 5
    from openai import NotFoundError

    with pytest.raises(NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_found"


def test_upstream_timeout_is_a_504(stack, served, monkeypatch):
    """The api in-process, with a 0.3 s upstream limit, against the stack's real engine."""
    from flask import Flask

    from modeldrop.api.app import handle
    from modeldrop.bootstrap import build_api_context
    from modeldrop.settings import Settings

    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODELDROP_UPSTREAM_TIMEOUT", "0.3")
    ctx = build_api_context(Settings.from_env())
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 400, "ignore_eos": True}
    with Flask(__name__).test_request_context(
        f"/v1/deployments/{served['id']}/chat/completions", method="POST", json=body
    ):
        from flask import request

        response = handle(request, ctx)
    assert response.status_code == 504
    assert json.loads(response.get_data())["error"]["code"] == "UPSTREAM_TIMEOUT"


def test_delete_undeploys_and_deletes_the_endpoint(stack, tiny_model):
    upload(stack, tiny_model, "to-delete")
    status = wait_state(stack, "to-delete")
    assert status["state"] == "DEPLOYED"
    url = follow(stack, status["links"]["self"])
    response = requests.delete(url, timeout=30)
    assert response.status_code in (200, 202) and response.json()["state"] in (
        "UNDEPLOYING",
        "UNDEPLOYED",
    )
    deadline = time.monotonic() + 60
    while requests.get(url, timeout=10).json()["state"] != "UNDEPLOYED":
        assert time.monotonic() < deadline, "never UNDEPLOYED"
        time.sleep(0.3)
    vertex = requests.get(f"{stack.urls['vertex']}/emulator/state", timeout=10).json()
    assert not [e for e in vertex["endpoints"] if e["name"] == status["endpoint"]]
    assert not [e for e in vertex["engines"] if e.get("endpoint") == status["endpoint"]]
    chat = requests.post(follow(stack, status["links"]["chat"]), json={"messages": []}, timeout=10)
    assert chat.status_code == 409 and chat.json()["error"]["state"] == "UNDEPLOYED"


def page_token(value: Any) -> str:
    """A page token in the store's format holding `value` (one it never hands out)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


LONG = "a" * 2000  # Firestore refuses it as a document id and as a queried value
HELLO = [{"role": "user", "content": "hi"}]
DEEP = b'{"model": "x", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
# (method, path, query, JSON body or raw bytes, status, code)
HOSTILE = [
    ("GET", f"/v1/models/{LONG}", None, None, 404, "NOT_FOUND"),
    ("GET", f"/v1/deployments/{LONG}", None, None, 404, "NOT_FOUND"),
    ("GET", "/v1/deployments/%2E%2E", None, None, 404, "NOT_FOUND"),
    ("DELETE", f"/v1/deployments/{LONG}", None, None, 404, "NOT_FOUND"),
    ("POST", f"/v1/deployments/{LONG}:predict", None, {"instances": [{}]}, 404, "NOT_FOUND"),
    ("GET", "/v1/deployments", {"model": LONG}, None, 400, "BAD_FILTER"),
    ("GET", "/v1/deployments", {"page_token": "garbage!"}, None, 400, "BAD_PAGE_TOKEN"),
    (
        "GET",
        "/v1/deployments",
        {"page_token": page_token(["2026-01-01T00:00:00+00:00", "a/b"])},
        None,
        400,
        "BAD_PAGE_TOKEN",
    ),
    ("GET", "/v1/deployments", [("limit", "1"), ("limit", "2")], None, 400, "BAD_QUERY"),
    ("GET", "/v1/deployments", {"limit": "9" * 5000}, None, 400, "BAD_LIMIT"),
    (
        "POST",
        "/v1/chat/completions",
        None,
        {"model": LONG, "messages": HELLO},
        404,
        "model_not_found",
    ),
    (
        "POST",
        "/v1/chat/completions",
        None,
        {"model": [1], "messages": HELLO},
        400,
        "model_required",
    ),
    ("POST", "/v1/chat/completions", None, DEEP, 400, "body_too_deep"),
    ("POST", "/v1/chat/completions", None, b'{"model": "x", "n": NaN}', 400, "bad_number"),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "status", "code"),
    HOSTILE,
    ids=[f"{row[0]} {row[1][:40]} {row[5]}" for row in HOSTILE],
)
def test_hostile_request_is_a_4xx_never_a_500(stack, method, path, query, body, status, code):
    sent = {"data": body} if isinstance(body, bytes) else {"json": body}
    response = requests.request(
        method, f"{stack.urls['api']}{path}", params=query, timeout=30, **sent
    )
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
        response.text[:500]
    )
    assert len(response.json()["error"]["message"]) < 600  # an excerpt of the input at most


def test_a_hostile_host_header_never_reaches_a_link(stack, served):
    for path in (f"/v1/deployments/{served['id']}", "/v1/deployments", "/v1/models/api-chat"):
        response = requests.get(
            f"{stack.urls['api']}{path}", headers={"Host": "evil.example:80"}, timeout=10
        )
        assert response.status_code == 200 and "evil.example" not in response.text, path
    self_link = response.json()["links"]["self"]
    assert follow(stack, self_link) == f"{stack.urls['api']}/v1/deployments/{served['id']}"
