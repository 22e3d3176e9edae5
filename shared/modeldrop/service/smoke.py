"""The smoke test: one real request to a deployed endpoint before its record says DEPLOYED.

Run by whoever polls the deploy (reconcile, the api's status read-through) once the operation is
done and the endpoint has its model: claimed with a lease on the record (`smoke_test.passed`
None while it runs), so it runs once per deployment. A pass makes the record DEPLOYED. A
transient error while the endpoint warms up (unreachable, 429, 502-504) is tried again at the
next poll, for at most WARMUP; anything else (an error status, a timeout, no output, no match
of `expect`) fails it: the record keeps DEPLOYING while the endpoint is undeployed and deleted
(nothing bills), then ends FAILED with SMOKE_TEST_FAILED and the server's last log lines.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from modeldrop import logs
from modeldrop.domain import smoke
from modeldrop.domain.deployment import Deployment, State, advance, update
from modeldrop.domain.findings import excerpt
from modeldrop.errors import ModeldropError
from modeldrop.service import teardown
from modeldrop.service.context import Context, describe
from modeldrop.service.placement import landed
from modeldrop.service.ports import EndpointInfo, UpstreamError, UpstreamUnreachable
from modeldrop.service.records import commit

log = logs.get("smoke")
WARMUP = timedelta(minutes=10)  # transient errors are retried this long after the first try
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def due(record: Deployment, now: datetime) -> bool:
    """Whether the smoke test should run now: never run, or a try whose claim has lapsed."""
    test = record.smoke_test
    return test is None or (test.get("passed") is None and record.lease_expired(now))


def run(ctx: Context, record: Deployment, info: EndpointInfo) -> Deployment | None:
    """Claim and run the smoke test of a record whose endpoint is ready; the record as it then
    stands (DEPLOYED, still trying, or failed and cleaning up), None if another worker has it."""
    now = ctx.clock()
    previous = record.smoke_test or {}
    block = record.overrides.get("smoke_test", {})
    kind, body = smoke.smoke_request(block, chat=_has_chat_template(record))
    started = previous.get("started_at", now)
    if now - started > WARMUP:  # the tries never finished (each claim died, or kept failing)
        last = previous.get("last_error")
        why = f"it did not pass within {WARMUP}" + (f" (last error: {last})" if last else "")
        return _fail(ctx, record, kind, body, why, None)
    claim = {
        "kind": kind,
        "passed": None,
        "started_at": started,
        "tries": previous.get("tries", 0) + 1,
    }
    claimed = commit(
        ctx,
        update(
            record,
            now,
            endpoint=info.name,
            endpoint_dns=info.dedicated_endpoint_dns,
            deployed_model_id=info.deployed_model_ids[0],
            smoke_test=claim,
            lease_expires_at=Deployment.lease_end(now, ctx.settings.lease_seconds),
        ),
    )
    if claimed is None:
        return None
    timeout = float(block.get("timeout_seconds", smoke.DEFAULT_TIMEOUT_SECONDS))
    began = time.monotonic()
    try:
        if kind == "chat":
            answer = ctx.endpoints.chat_completions(claimed, body, timeout=timeout)
        else:
            answer = ctx.endpoints.predict(claimed, body, timeout=timeout)
    except Exception as exc:  # every failure is an outcome: retried, or the test fails
        if _transient(exc) and ctx.clock() - started < WARMUP:
            log.info("smoke test: endpoint warming up: %s", describe(exc), extra=_of(record))
            retry = {**claim, "last_error": smoke.shortened(str(exc))}
            return commit(
                ctx, update(claimed, ctx.clock(), smoke_test=retry, lease_expires_at=None)
            )
        return _fail(ctx, claimed, kind, body, _why(exc), getattr(exc, "status", None))
    latency_ms = round((time.monotonic() - began) * 1000)
    text = smoke.answer_text(kind, answer)
    problem = smoke.judge(text, block.get("expect"))
    if problem:
        return _fail(ctx, claimed, kind, body, problem, None, text, latency_ms)
    passed = {
        **claim,
        "passed": True,
        "latency_ms": latency_ms,
        "excerpt": smoke.shortened(text),
        "at": ctx.clock(),
    }
    deployed = advance(
        claimed,
        State.DEPLOYED,
        ctx.clock(),
        claimed.endpoint or "",
        smoke_test=passed,
        attempts=landed(claimed, ctx.clock()),
        error=None,
        lease_expires_at=None,
        promotion_pending=True,  # service.revisions weighs it against the serving revision
    )
    return commit(ctx, deployed)


def _fail(
    ctx: Context,
    record: Deployment,
    kind: str,
    body: dict[str, Any],
    why: str,
    status: int | None,
    text: str = "",
    latency_ms: int | None = None,
) -> Deployment | None:
    now = ctx.clock()
    test = {
        **(record.smoke_test or {}),
        "kind": kind,
        "passed": False,
        "status": status,
        "latency_ms": latency_ms,
        "excerpt": smoke.shortened(text) if text else None,
        "at": now,
    }
    error = ModeldropError(
        f"The smoke test failed: {why}. Request ({kind}): {excerpt(body)}."
        + (f" Answer: {excerpt(text)}" if text else ""),
        "The endpoint was undeployed and deleted. Read error.logs (or GET .../logs) for the "
        "server's side; check the chat template and EOS tokens, or set smoke_test in "
        "modeldrop.yaml (messages or prompt, expect, max_tokens, timeout_seconds), then upload "
        "the folder again.",
        code="SMOKE_TEST_FAILED",
    )
    log.warning("smoke test failed: %s", why, extra=_of(record))
    return teardown.fail(ctx, record, error.as_dict(), smoke_test=test)


def _has_chat_template(record: Deployment) -> bool:
    findings = (record.validation or {}).get("findings", [])
    return not any(
        isinstance(f, dict) and f.get("code") == "CHAT_TEMPLATE_MISSING" for f in findings
    )


def _transient(exc: Exception) -> bool:
    if isinstance(exc, UpstreamUnreachable):
        return True
    return isinstance(exc, UpstreamError) and exc.status in TRANSIENT_STATUSES


def _why(exc: Exception) -> str:
    if isinstance(exc, UpstreamError):
        answered = excerpt(exc.body.decode("utf-8", "replace"))
        return f"the endpoint answered HTTP {exc.status}: {answered}"
    if isinstance(exc, ModeldropError):
        return exc.message
    return describe(exc)


def _of(record: Deployment) -> dict[str, str]:
    return {"deployment_id": record.id}
