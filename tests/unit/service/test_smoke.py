"""The smoke test before DEPLOYED, on in-memory fakes: pass, fail (and clean up), warm-up
retries, one runner at a time. The same paths run on the local stack in
tests/e2e/test_smoke_stack.py."""

from __future__ import annotations

import pytest

from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.ports import LogEntry, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from modeldrop.service.reconcile import reconcile
from modeldrop.service.smoke import WARMUP
from tests.fixtures.uploads import upload_all


def deploying(h, model, yaml: str = ""):
    if yaml:
        (model / "modeldrop.yaml").write_text(yaml)
    record = upload_all(h, model)[-1]
    assert record.state is State.VALIDATED, record.error
    started = on_validated(h.ctx, record.id)
    h.deployer.finish()
    return started


def test_a_passing_smoke_test_is_kept_on_the_deployed_record(h, model):
    record = deploying(h, model)
    assert reconcile(h.ctx).moved == {record.id: "DEPLOYED"}
    final = h.store.get(record.id)
    test = final.smoke_test
    assert (test["kind"], test["passed"], test["excerpt"], test["tries"]) == ("chat", True, "hi", 1)
    assert isinstance(test["latency_ms"], int) and test["latency_ms"] >= 0
    ((kind, deployment_id, body),) = h.endpoints.calls
    assert (kind, deployment_id, body["max_tokens"]) == ("chat", record.id, 16)
    assert [a["outcome"] for a in final.attempts] == ["deployed"]


def test_a_prompt_makes_it_a_predict_with_the_folders_limits(h, model):
    record = deploying(h, model, 'smoke_test: {prompt: "2+2=", max_tokens: 3, expect: "x"}\n')
    reconcile(h.ctx)
    assert h.store.get(record.id).state is State.DEPLOYED
    ((kind, _, body),) = h.endpoints.calls
    assert (kind, body) == ("predict", {"instances": [{"prompt": "2+2=", "max_tokens": 3}]})


def test_an_answer_that_does_not_match_fails_and_deletes_the_endpoint(h, model):
    record = deploying(h, model, 'smoke_test: {expect: "^bonjour"}\n')
    h.logs.entries[record.id] = [
        LogEntry("2026-11-24T12:00:02Z", "ERROR", "second line"),
        LogEntry("2026-11-24T12:00:01Z", "INFO", "first line"),
    ]
    assert reconcile(h.ctx).moved == {record.id: "FAILED"}
    final = h.store.get(record.id)
    assert final.error["code"] == "SMOKE_TEST_FAILED"
    assert "does not match expect '^bonjour'" in final.error["message"]
    assert "Answer: 'hi'" in final.error["message"] and "Request (chat)" in final.error["message"]
    assert [line["text"] for line in final.error["logs"]] == ["first line", "second line"]
    assert final.smoke_test["passed"] is False and final.smoke_test["excerpt"] == "hi"
    assert h.deployer.endpoints == {} and final.endpoint is None
    assert [a["outcome"] for a in final.attempts] == ["error"]
    assert h.events.states(record.id)[-2:] == ["DEPLOYING", "FAILED"]


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        (UpstreamError(400, b'{"error": "no chat template"}', "u"), "HTTP 400"),
        (UpstreamTimeout("The model endpoint did not answer within 60 s.", ""), "within 60 s"),
    ],
)
def test_an_error_status_or_a_timeout_fails_at_once(h, model, failure, why):
    record = deploying(h, model)
    h.endpoints.failure = failure
    reconcile(h.ctx)
    final = h.store.get(record.id)
    assert final.state is State.FAILED and why in final.error["message"]
    assert final.error["logs"] == [] and h.deployer.endpoints == {}


def test_a_warming_endpoint_is_tried_again_within_the_warmup(h, model):
    record = deploying(h, model)
    h.endpoints.failure = UpstreamUnreachable("connection refused", "")
    reconcile(h.ctx)
    waiting = h.store.get(record.id)
    assert waiting.state is State.DEPLOYING and waiting.smoke_test["passed"] is None
    assert waiting.smoke_test["last_error"] == "connection refused"
    h.endpoints.failure = UpstreamError(503, b"loading", "u")
    h.clock.advance(60)
    reconcile(h.ctx)
    assert h.store.get(record.id).smoke_test["tries"] == 2
    h.endpoints.failure = None
    h.clock.advance(60)
    assert reconcile(h.ctx).moved == {record.id: "DEPLOYED"}
    assert h.store.get(record.id).smoke_test["tries"] == 3


def test_an_endpoint_that_never_warms_up_fails_after_the_warmup(h, model):
    record = deploying(h, model)
    h.endpoints.failure = UpstreamUnreachable("connection refused", "")
    reconcile(h.ctx)
    h.clock.advance(WARMUP.total_seconds() + 1)
    reconcile(h.ctx)
    final = h.store.get(record.id)
    assert final.state is State.FAILED and final.error["code"] == "SMOKE_TEST_FAILED"
    assert "connection refused" in final.error["message"]


def test_a_running_smoke_test_is_not_run_twice(h, model):
    from modeldrop.service.lifecycle import poll_deploy

    record = deploying(h, model)
    h.endpoints.failure = UpstreamUnreachable("connection refused", "")
    first = h.ctx.endpoints.chat_completions

    def second_poll_meanwhile(deployment, body, timeout=None):
        # while the first runner waits for the endpoint, a status read polls the record
        assert poll_deploy(h.ctx, h.store.get(record.id)) is None
        return first(deployment, body, timeout)

    h.endpoints.chat_completions = second_poll_meanwhile
    poll_deploy(h.ctx, h.store.get(record.id))
    assert len(h.endpoints.calls) == 1  # only the claim holder called the endpoint
