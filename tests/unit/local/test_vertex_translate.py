"""Query translation of the local Vertex AI emulator: engine dialects, :predict, SSE ending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.translate import (
    CHAT,
    COMPLETIONS,
    EngineRequest,
    chat_request,
    completion_body,
    engine_body,
    instances,
    prediction,
    raw_predict_request,
    rejected_fields,
)


def test_model_is_rewritten_and_vllm_keeps_its_fields(tmp_path: Path) -> None:
    body = {"model": "vertex-model-id", "ignore_eos": True, "top_k": 5, "max_tokens": 9}
    out = engine_body(body, "vllm", "served", tmp_path)
    assert out == {**body, "model": "served"}
    assert body["model"] == "vertex-model-id"  # the caller's body is not changed


def test_transformers_gets_vllm_fields_as_generation_config(tmp_path: Path) -> None:
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"eos_token_id": 4, "do_sample": True, "transformers_version": "5"})
    )
    body = {"model": "m", "ignore_eos": True, "top_k": 3, "max_tokens": 12, "temperature": 0}
    out = engine_body(body, "transformers", "served", tmp_path)
    assert "ignore_eos" not in out and "top_k" not in out and out["temperature"] == 0
    config = json.loads(out["generation_config"])
    assert config == {
        "eos_token_id": 4,
        "do_sample": True,
        "max_new_tokens": 12,
        "min_new_tokens": 12,  # EOS cannot end the answer before max_tokens
        "top_k": 3,
    }


def test_transformers_body_without_vllm_fields_is_untouched(tmp_path: Path) -> None:
    body = {"messages": [], "max_tokens": 3}
    assert engine_body(body, "transformers", "served", tmp_path) == {**body, "model": "served"}


def test_rejected_fields_from_a_422() -> None:
    text = json.dumps({"detail": "Unexpected fields in the request: {'ignore_eos', 'foo'}"})
    assert rejected_fields(422, text) == {"ignore_eos", "foo"}
    assert rejected_fields(400, text) == set()
    assert rejected_fields(422, '{"detail": "something else"}') == set()
    assert rejected_fields(422, "not json Unexpected fields in the request: {'x'}") == {"x"}


def test_instances_are_checked() -> None:
    ok = {"instances": [{"prompt": "hi", "max_tokens": 3}]}
    assert instances(ok, ":predict") == ok["instances"]
    for bad, needle in [
        ({}, "needs a JSON body"),
        ({"instances": []}, "instances is empty"),
        ({"instances": [{"text": "hi"}]}, 'needs a "prompt"'),
    ]:
        with pytest.raises(RpcError, match=needle):
            instances(bad, ":predict")


def test_completion_body_drops_container_keys_and_defaults_max_tokens() -> None:
    body = completion_body({"prompt": "p", "raw_response": True, "stream": True}, stream=False)
    assert body == {"prompt": "p", "max_tokens": 16}
    assert completion_body({"prompt": "p", "max_tokens": 4}, stream=True)["stream"] is True


def test_prediction_format_follows_model_garden() -> None:
    completion = {"choices": [{"text": " the answer"}]}
    assert prediction({"prompt": "Q?"}, completion) == "Prompt:\nQ?\nOutput:\n the answer"
    assert prediction({"prompt": "Q?", "raw_response": True}, completion) == " the answer"


CHAT_BODY = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
PROMPT_BODY = {"prompt": "p", "max_tokens": 2}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"instances": [{"prompt": "p", "stream": True, "raw_response": True}]},
            EngineRequest(COMPLETIONS, {"prompt": "p", "max_tokens": 16, "stream": True}, True),
        ),
        (
            {"instances": [{"prompt": "p", "max_tokens": 2}]},
            EngineRequest(COMPLETIONS, PROMPT_BODY, False),
        ),
        (CHAT_BODY, EngineRequest(CHAT, CHAT_BODY, True)),
        (PROMPT_BODY, EngineRequest(COMPLETIONS, PROMPT_BODY, False)),
    ],
)
def test_raw_predict_takes_one_instance_or_an_openai_body(
    body: dict, expected: EngineRequest
) -> None:
    assert raw_predict_request(body, "streamRawPredict") == expected


def test_raw_predict_and_chat_refuse_what_they_cannot_route() -> None:
    two = {"instances": [{"prompt": "a"}, {"prompt": "b"}]}
    with pytest.raises(RpcError, match=r"takes one instance; got 2\. Use :predict"):
        raw_predict_request(two, "rawPredict")
    with pytest.raises(RpcError, match="rawPredict needs"):
        raw_predict_request({"text": "x"}, "rawPredict")
    assert chat_request(CHAT_BODY) == EngineRequest(CHAT, CHAT_BODY, True)
    with pytest.raises(RpcError, match='"messages"'):
        chat_request({"prompt": "x"})
