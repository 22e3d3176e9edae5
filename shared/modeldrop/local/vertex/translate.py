"""Turn Vertex query bodies into engine requests, and engine answers into Vertex answers.

Pure functions. A dedicated endpoint on Google Cloud runs Model Garden's vLLM container; the
local engine may be `transformers serve`, which rejects fields it does not know (422) and ends
streams without `data: [DONE]`. The differences are smoothed here, each with a log line.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldrop.local.vertex.errors import invalid

log = logging.getLogger("modeldrop.vertex")

CHAT = "/v1/chat/completions"  # the engine's OpenAI routes
COMPLETIONS = "/v1/completions"
PREDICT_DEFAULT_MAX_TOKENS = 16  # vLLM's default for completions
# Instance keys that steer the Vertex container itself, never sent to the engine.
CONTAINER_KEYS = ("raw_response", "@requestFormat")
# vLLM sampling fields that transformers serve rejects but can honour via generation_config.
_GENERATION_FIELDS = {
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "min_tokens": "min_new_tokens",
}
_UNEXPECTED = re.compile(r"Unexpected fields in the request: (\{.*\})")


@dataclass(frozen=True)
class EngineRequest:
    """What a query becomes for the engine: its OpenAI route, the body, whether it streams."""

    path: str
    body: dict[str, Any]
    stream: bool


def chat_request(body: Any) -> EngineRequest:
    """/chat/completions: an OpenAI chat body, passed on."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise invalid('chat/completions needs a JSON body with "messages": [...].')
    return EngineRequest(CHAT, body, body.get("stream") is True)


def raw_predict_request(body: Any, method: str) -> EngineRequest:
    """:rawPredict and :streamRawPredict: one Vertex instance (`{"instances": [{"prompt": ...,
    "stream": true}]}`) as a completion, or an OpenAI chat or completions body as it is."""
    if isinstance(body, dict) and "instances" in body:
        items = instances(body, method)
        if len(items) != 1:
            raise invalid(f"{method} takes one instance; got {len(items)}. Use :predict.")
        stream = items[0].get("stream") is True
        return EngineRequest(COMPLETIONS, completion_body(items[0], stream), stream)
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return chat_request(body)
    if isinstance(body, dict) and "prompt" in body:
        return EngineRequest(COMPLETIONS, body, body.get("stream") is True)
    raise invalid(
        f'{method} needs {{"instances": [{{"prompt": ..., "stream": true}}]}} or an '
        "OpenAI chat/completions body."
    )


def engine_body(body: dict[str, Any], kind: str, served_model: str, folder: Path) -> dict:
    """A copy of an OpenAI-style body for the engine: its model name, its dialect."""
    out = dict(body)
    if out.get("model") not in (None, served_model):
        log.debug("model %r rewritten to the engine's %r", out["model"], served_model)
    out["model"] = served_model
    if kind == "transformers":
        out = _for_transformers(out, folder)
    return out


def _for_transformers(body: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Move vLLM-only sampling fields (ignore_eos, top_k, ...) into a generation_config."""
    moved = {key: body.pop(key) for key in [*_GENERATION_FIELDS, "ignore_eos"] if key in body}
    if not moved:
        return body
    config = _generation_defaults(folder)
    if "generation_config" in body:
        config.update(json.loads(body["generation_config"]))
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    config["max_new_tokens"] = max_tokens or max(config.get("max_new_tokens") or 0, 1024)
    for key, value in moved.items():
        if key in _GENERATION_FIELDS:
            config[_GENERATION_FIELDS[key]] = value
    if moved.get("ignore_eos"):
        if max_tokens:
            config["min_new_tokens"] = max_tokens  # EOS cannot end the answer early
        else:
            log.info("ignore_eos without max_tokens dropped for transformers serve")
    log.info("transformers serve: %s sent as generation_config %s", sorted(moved), sorted(config))
    body["generation_config"] = json.dumps(config)
    return body


def _generation_defaults(folder: Path) -> dict[str, Any]:
    """The model's generation_config.json (what transformers serve starts from), if any."""
    try:
        config = json.loads((folder / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    for key in ("_from_model_config", "transformers_version"):
        config.pop(key, None)
    return config


def rejected_fields(status: int, text: str) -> set[str]:
    """The fields a 422 "Unexpected fields in the request: {...}" names (empty otherwise)."""
    if status != 422:
        return set()
    try:
        detail = json.loads(text).get("detail", "")
    except (ValueError, AttributeError):
        detail = text
    match = _UNEXPECTED.search(str(detail))
    if not match:
        return set()
    try:
        fields = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return set()
    return {f for f in fields if isinstance(f, str)} if isinstance(fields, set) else set()


def instances(body: Any, method: str) -> list[dict[str, Any]]:
    """The checked `instances` of a :predict or :streamRawPredict body."""
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise invalid(f'{method} needs a JSON body {{"instances": [{{"prompt": ...}}]}}.')
    items = body["instances"]
    if not items:
        raise invalid(f"{method}: instances is empty; send at least one instance.")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            got = json.dumps(item)[:80]
            raise invalid(f'{method}: instances[{index}] needs a "prompt" string (got {got}).')
    return items


def completion_body(instance: dict[str, Any], stream: bool) -> dict[str, Any]:
    """A /v1/completions body for one instance (container-only keys removed)."""
    body = {k: v for k, v in instance.items() if k not in CONTAINER_KEYS and k != "stream"}
    body.setdefault("max_tokens", PREDICT_DEFAULT_MAX_TOKENS)
    if stream:
        body["stream"] = True
    return body


def prediction(instance: dict[str, Any], completion: dict[str, Any]) -> str:
    """What Model Garden's vLLM container answers per instance: "Prompt:\\n...\\nOutput:\\n..."
    unless the instance sets raw_response, then the generated text alone."""
    choices = completion.get("choices") or [{}]
    text = choices[0].get("text") or ""
    if instance.get("raw_response"):
        return text
    return f"Prompt:\n{instance['prompt']}\nOutput:\n{text}"
