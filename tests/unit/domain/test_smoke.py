"""The smoke test's request and judgement, and the checks of modeldrop.yaml's smoke_test."""

from __future__ import annotations

import pytest

from modeldrop.domain.smoke import answer_text, expect_problem, judge, smoke_request
from modeldrop.validation.overrides import parse_overrides


def test_chat_by_default_predict_without_a_template_or_with_a_prompt():
    kind, body = smoke_request({}, chat=True)
    assert kind == "chat" and body["max_tokens"] == 16 and body["messages"][0]["role"] == "user"
    assert smoke_request({}, chat=False)[0] == "predict"
    messages = [{"role": "user", "content": "ping"}]
    assert smoke_request({"messages": messages}, chat=False) == (
        "chat",
        {"messages": messages, "max_tokens": 16, "temperature": 0},
    )
    assert smoke_request({"prompt": "p", "max_tokens": 2}, chat=True) == (
        "predict",
        {"instances": [{"prompt": "p", "max_tokens": 2}]},
    )


def test_the_answer_text_of_each_kind_and_odd_shapes():
    assert answer_text("chat", {"choices": [{"message": {"content": "hey"}}]}) == "hey"
    assert answer_text("predict", {"predictions": ["Prompt:\nhi\nOutput:\n there"]}) == " there"
    assert answer_text("predict", {"predictions": ["Prompt:\nhi\nOutput:\n"]}) == ""
    assert answer_text("predict", {"predictions": ["plain"]}) == "plain"
    for odd in (None, [], {"choices": "x"}, {"choices": [None]}, {"predictions": [{"a": 1}]}):
        assert answer_text("chat", odd) == "" and answer_text("predict", odd) == ""
    assert len(answer_text("chat", {"choices": [{"message": {"content": "x" * 10**6}}]})) == 2000


def test_judge_needs_output_and_the_expected_match():
    assert judge("  \n", None) == "the answer has no output"
    assert judge("Hello there", "(?i)hello") == ""
    assert "does not match" in judge("Hello there", "^bye")


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [("(", "not a regular expression"), ("(a+)+$", "nests a quantifier"), ("(x*y)*", "nests")],
)
def test_expect_patterns_that_cannot_be_used(pattern, problem):
    assert problem in expect_problem(pattern)
    found = parse_overrides(f"smoke_test: {{expect: '{pattern}'}}\n".encode(), "modeldrop.yaml")
    assert [f.code for f in found.findings] == ["OVERRIDES_INVALID"]
    assert "smoke_test.expect" in found.findings[0].message and found.values == {}


def test_a_good_smoke_test_block_is_kept_and_messages_and_prompt_exclude_each_other():
    good = b"smoke_test: {messages: [{role: user, content: hi}], expect: '(?i)h', max_tokens: 4}\n"
    assert parse_overrides(good, "m.yaml").values["smoke_test"]["max_tokens"] == 4
    both = b"smoke_test: {messages: [{role: user, content: hi}], prompt: hi}\n"
    assert [f.code for f in parse_overrides(both, "m.yaml").findings] == ["OVERRIDES_INVALID"]
    huge = b"smoke_test: {timeout_seconds: 100000}\n"
    assert parse_overrides(huge, "m.yaml").findings
