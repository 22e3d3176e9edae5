"""Placement with fallback on the live stack: real functions, Firestore, Pub/Sub, fake-gcs-server
and the Vertex emulator's capacity table and faults (echo engine). Each test sets the table it
needs and uses its own model name; MODELDROP_REGIONS is us-central1,europe-west4."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import requests

from modeldrop.domain.deployment import State, advance, new_deployment
from modeldrop.local.uploader import upload_folder
from tests.fixtures.local_stack import endpoints_of, storage_client, vertex, wait_state
from tests.fixtures.model_folders import write_valid

CHEAP = "placement: {max_hourly_usd: 0.9}\n"  # g2-standard-4 (1 x L4) in each region


def tried(body: dict) -> list[tuple]:
    return [(a["region"], a["spot"], a["outcome"]) for a in body["attempts"]]


def test_no_quota_in_the_first_region_lands_in_the_second(capacity_stack, placing):
    table = {"us-central1": {"NVIDIA_L4": {"quota": 0}}}
    started = placing("quota-first", CHEAP, table)
    body = wait_state(capacity_stack, "quota-first", timeout=120)
    seconds = time.monotonic() - started
    assert body["state"] == "DEPLOYED", body["error"]
    assert body["placement"]["region"] == "europe-west4" and body["placement"]["spot"] is False
    assert tried(body) == [("europe-west4", False, "deployed")]
    # RecommendSpec (the emulator answers from the same table) foresaw it: no attempt was wasted
    assert body["preflight"]["source"] == "recommend_spec"
    assert [(d["region"], d["outcome"]) for d in body["preflight"]["dropped"]] == [
        ("us-central1", "no_quota")
    ]
    assert "/locations/europe-west4/" in body["endpoint"]
    chat = requests.post(
        body["links"]["chat"],
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=30,
    )
    assert chat.status_code == 200, chat.text  # the proxy reaches the europe-west4 endpoint
    print(f"\nupload -> DEPLOYED with the fallback to the second region: {seconds:.1f} s")


def test_a_quota_refusal_recommend_spec_did_not_foresee_falls_through(capacity_stack, placing):
    started = placing("quota-late", CHEAP, {}, [{"status": 429, "routes": ["deploy"]}])
    body = wait_state(capacity_stack, "quota-late", timeout=120)
    seconds = time.monotonic() - started
    assert body["state"] == "DEPLOYED", body["error"]
    assert tried(body) == [("us-central1", False, "no_quota"), ("europe-west4", False, "deployed")]
    assert body["attempts"][0]["code"] == "VERTEX_QUOTA"
    assert "custom_model_serving_nvidia_l4_gpus" in body["attempts"][0]["message"]
    assert endpoints_of(capacity_stack, body["id"]) == [f"md-{body['id']}-2"]
    print(f"\nupload -> DEPLOYED after one refused attempt: {seconds:.1f} s")


def test_an_unforeseen_stockout_deletes_the_attempts_endpoint_then_the_next_lands(
    capacity_stack, placing
):
    # the first attempt's operation stocks out; its endpoint's deletion then fails twice (503)
    faults = [{"status": "stockout"}, {"status": 503, "count": 2, "routes": ["delete"]}]
    started = placing("stockout", CHEAP, {}, faults)
    body = wait_state(capacity_stack, "stockout", timeout=120)
    seconds = time.monotonic() - started
    assert body["state"] == "DEPLOYED", body["error"]
    assert tried(body) == [("us-central1", False, "stockout"), ("europe-west4", False, "deployed")]
    assert body["attempts"][0]["code"] == "VERTEX_STOCKOUT"
    assert endpoints_of(capacity_stack, body["id"]) == [f"md-{body['id']}-2"]
    assert vertex(capacity_stack, "GET", "/emulator/state")["faults"] == []  # all fired
    print(f"\nupload -> DEPLOYED after a stockout fallback: {seconds:.1f} s")


def test_spot_prefer_falls_back_to_on_demand_and_spot_only_does_not(capacity_stack, placing):
    table = {"us-central1": {"NVIDIA_L4": {"spot_stock": 0}}}
    limits = "max_hourly_usd: 0.9, regions: [us-central1]"
    placing("spot-prefer", f"placement: {{{limits}, spot: prefer}}\n", table)
    body = wait_state(capacity_stack, "spot-prefer", timeout=120)
    assert body["state"] == "DEPLOYED", body["error"]
    assert tried(body) == [("us-central1", True, "stockout"), ("us-central1", False, "deployed")]
    assert body["placement"]["spot"] is False and "STOCKOUT" in body["attempts"][0]["message"]

    placing("spot-only", f"placement: {{{limits}, spot: only}}\n", table)
    only = wait_state(capacity_stack, "spot-only", timeout=120)
    assert only["state"] == "FAILED" and only["error"]["code"] == "NO_CAPACITY"
    attempts = tried(only)  # every L4 machine under the cap on Spot, none on demand
    assert attempts and set(attempts) == {("us-central1", True, "stockout")}
    assert endpoints_of(capacity_stack, only["id"]) == []


def test_every_candidate_exhausted_ends_no_capacity_with_nothing_running(capacity_stack, placing):
    table = {r: {"NVIDIA_L4": {"stock": 0}} for r in ("us-central1", "europe-west4")}
    placing("exhausted", CHEAP, table)
    body = wait_state(capacity_stack, "exhausted", timeout=120)
    assert body["state"] == "FAILED" and body["error"]["code"] == "NO_CAPACITY"
    assert tried(body) == [("us-central1", False, "stockout"), ("europe-west4", False, "stockout")]
    hint = body["error"]["hint"]
    assert "us-central1: no stock of NVIDIA_L4" in hint and "europe-west4: no stock" in hint
    assert "cheapest machine that fits is g2-standard-4 with 1 x NVIDIA_L4" in hint
    assert endpoints_of(capacity_stack, body["id"]) == []
    assert vertex(capacity_stack, "GET", "/emulator/capacity")["in_use"] == {}
    assert body["links"]["self"]  # a person reads it at the status URL
    events = [s for s in body["history"] if s["state"] == "FAILED"]
    assert events and events[-1]["note"] == "NO_CAPACITY"


def test_a_deploy_that_crashed_after_calling_deploy_resumes_with_one_endpoint(
    capacity_stack, tmp_path, monkeypatch
):
    """The deploy function called Deploy for attempt 1 and died before recording the operation,
    which then stocked out. The record, as the crash left it, is written to the stack's
    Firestore; the live reconcile takes the claim over when its lease ends, finds attempt 1's
    endpoint and its lost operation, sees the stockout and lands attempt 2 within seconds (not
    after the 3 h deploy timeout), with one endpoint left."""
    from modeldrop.bootstrap import build_context
    from modeldrop.service.placement import plan
    from modeldrop.settings import Settings

    for name, value in capacity_stack.env.items():
        monkeypatch.setenv(name, value)
    ctx = build_context(Settings.from_env())
    vertex(capacity_stack, "DELETE", "/emulator/faults")
    vertex(capacity_stack, "POST", "/emulator/capacity", {})
    folder = write_valid(tmp_path / "crashed")
    (folder / "modeldrop.yaml").write_text(CHEAP)
    # outside the watched root: only this test's record exists for it
    bucket = capacity_stack.config.bucket
    upload_folder(storage_client(capacity_stack), folder, bucket, "elsewhere/crashed")
    validation = {"verdict": "accepted", "weight_bytes": 4096, "attention_heads": 2}
    now = datetime.now(UTC)
    record = new_deployment(capacity_stack.config.bucket, "elsewhere/crashed", "fp", 1, now)
    record = advance(record, State.VALIDATING, now)
    limits = {"placement": {"max_hourly_usd": 0.9}}
    record = advance(record, State.VALIDATED, now, validation=validation, overrides=limits)
    lease = now + timedelta(seconds=8)
    record = advance(record, State.DEPLOYING, now, lease_expires_at=lease, claims=1)
    assert ctx.store.create(record)
    planned = plan(ctx, ctx.store.get(record.id))
    assert planned and [c["region"] for c in planned.candidates] == ["us-central1", "europe-west4"]
    first = {"attempt": 1, **planned.candidates[0]}
    crashed = ctx.store.replace(replace(planned, placement=first))
    vertex(capacity_stack, "POST", "/emulator/faults", {"status": "stockout"})
    ctx.deployer.deploy(crashed)  # the call the crashed function made; nothing recorded
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        final = ctx.store.get(record.id)
        if final.state is not State.DEPLOYING:
            break
        time.sleep(0.5)
    assert final.state is State.DEPLOYED, final.error
    assert [(a["attempt"], a["outcome"]) for a in final.attempts] == [
        (1, "stockout"),
        (2, "deployed"),
    ]
    assert final.placement["region"] == "europe-west4"
    assert endpoints_of(capacity_stack, record.id) == [f"md-{record.id}-2"]
    while not ctx.deployer.undeploy(final.endpoint):
        time.sleep(0.2)
