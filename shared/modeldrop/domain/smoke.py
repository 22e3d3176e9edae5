"""The smoke test's request and its judgement (pure: no I/O).

One real request before a deployment is DEPLOYED: a chat completion when the folder has a chat
template, else a `:predict`, with a short max_tokens; modeldrop.yaml's `smoke_test` block can
set the messages or the prompt, a regex the answer must match, max_tokens and the timeout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DEFAULT_MAX_TOKENS = 16
DEFAULT_TIMEOUT_SECONDS = 60
ANSWER_CHARS = 2_000  # of the answer matched against `expect` (and at most this much is kept)
DEFAULT_MESSAGES = ({"role": "user", "content": "Say hello in one short sentence."},)
DEFAULT_PROMPT = "Hello! Please say hello back."
# A quantified group that itself holds a quantifier, e.g. (a+)+ or (x*y)*: the shapes whose
# backtracking explodes. Python's re has no time limit, so `expect` refuses them outright.
NESTED_QUANTIFIER = re.compile(r"\([^()]*(?:[*+?]|\{\d)[^()]*\)\s*(?:[*+?]|\{\d)")


def expect_problem(pattern: str) -> str:
    """Why `pattern` cannot be a smoke test's `expect` ("" when it can)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"is not a regular expression ({exc})"
    if NESTED_QUANTIFIER.search(pattern):
        return (
            "nests a quantifier inside a quantified group (such as (a+)+), which can take "
            "exponential time"
        )
    return ""


def smoke_request(settings_block: Mapping[str, Any], chat: bool) -> tuple[str, dict[str, Any]]:
    """("chat" | "predict", body): the request of the folder's `smoke_test` block, or the
    default one (chat when the folder has a chat template)."""
    max_tokens = int(settings_block.get("max_tokens", DEFAULT_MAX_TOKENS))
    if "prompt" in settings_block or ("messages" not in settings_block and not chat):
        prompt = str(settings_block.get("prompt", DEFAULT_PROMPT))
        return "predict", {"instances": [{"prompt": prompt, "max_tokens": max_tokens}]}
    messages = [dict(m) for m in settings_block.get("messages", DEFAULT_MESSAGES)]
    return "chat", {"messages": messages, "max_tokens": max_tokens, "temperature": 0}


def answer_text(kind: str, response: Any) -> str:
    """The generated text of an answer ("" when it has none), at most ANSWER_CHARS."""
    text: Any = ""
    if isinstance(response, dict) and kind == "chat":
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            text = message.get("content") if isinstance(message, dict) else ""
    elif isinstance(response, dict):
        predictions = response.get("predictions")
        if isinstance(predictions, list) and predictions and isinstance(predictions[0], str):
            # Model Garden's vLLM answers "Prompt:\n<prompt>\nOutput:\n<generated>"
            head, marker, generated = predictions[0].partition("\nOutput:\n")
            text = generated if marker else head
    return text[:ANSWER_CHARS] if isinstance(text, str) else ""


def shortened(text: str, limit: int = 200) -> str:
    """At most `limit` characters of a text kept on the record (cut with an ellipsis)."""
    return text if len(text) <= limit else text[:limit] + "..."


def judge(text: str, expect: str | None) -> str:
    """Why the answer fails ("" when it passes): empty output, or no match of `expect`."""
    if not text.strip():
        return "the answer has no output"
    if expect and not re.search(expect, text):
        return f"the answer does not match expect {expect!r}"
    return ""
