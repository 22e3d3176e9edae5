"""Serving readiness on the live stack: the smoke test before DEPLOYED (echo engine: a pass is
kept on the record, an `expect` that cannot match ends SMOKE_TEST_FAILED with nothing left in
the emulator), and the model server's log of an engine that fails to start (transformers)."""

from __future__ import annotations

import shutil

import requests

from tests.fixtures.local_stack import endpoints_of, upload, wait_state


def test_a_passing_smoke_test_is_on_the_status(capacity_stack, placing):
    placing("smoke-pass", "smoke_test: {max_tokens: 4}\n", {})
    body = wait_state(capacity_stack, "smoke-pass", timeout=120)
    assert body["state"] == "DEPLOYED", body["error"]
    test = body["smoke_test"]
    assert (test["kind"], test["passed"]) == ("chat", True) and test["excerpt"]
    assert 0 <= test["latency_ms"] < 30_000


def test_an_expect_that_cannot_match_fails_and_leaves_no_endpoint(capacity_stack, placing):
    placing("smoke-fail", 'smoke_test: {expect: "^zzz-never$", max_tokens: 4}\n', {})
    body = wait_state(capacity_stack, "smoke-fail", timeout=120)
    assert body["state"] == "FAILED" and body["error"]["code"] == "SMOKE_TEST_FAILED"
    assert "does not match expect" in body["error"]["message"]
    assert "Answer:" in body["error"]["message"] and body["smoke_test"]["excerpt"]
    assert body["smoke_test"]["passed"] is False and body["endpoint"] is None
    assert endpoints_of(capacity_stack, body["id"]) == []
    logs = requests.get(f"{body['links']['self']}/logs", timeout=10)
    assert logs.status_code == 200, logs.text


def test_an_engine_that_fails_to_start_shows_its_log(stack, tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(tiny_model, tmp_path / "engine-fails")
    weights = load_file(broken / "model.safetensors")
    norm = weights["model.norm.weight"]  # one size too many: transformers refuses to load it
    weights["model.norm.weight"] = torch.ones(norm.shape[0] + 3, dtype=norm.dtype)
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    upload(stack, broken, "engine-fails")
    body = wait_state(stack, "engine-fails", timeout=300)
    assert body["state"] == "FAILED", body
    assert "failed to start" in body["error"]["message"]
    lines = [line["text"] for line in body["error"]["logs"]]
    assert lines and any("mismatch" in text.lower() for text in lines), lines
    served = requests.get(f"{body['links']['self']}/logs?limit=50", timeout=30)
    assert served.status_code == 200, served.text
    texts = [entry["text"] for entry in served.json()["entries"]]
    assert any("mismatch" in text.lower() for text in texts)
    assert set(lines) <= set(texts) or len(texts) == 50
