"""Revisions and cost on the live stack (echo engine; MODELDROP_RETIRE_AFTER_SECONDS=15,
MODELDROP_MAX_HOURLY_USD=1.00): a new revision takes the name over and the old one is retired
with one endpoint left; a bad revision leaves the serving one answering; rollback within the
grace; idle undeploy and redeploy; a cap that blocks a second model until the first is
deleted; the costs add up."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RETIRE_AFTER_SECONDS
from tests.fixtures.local_stack import endpoints_of, upload, wait_state
from tests.fixtures.model_folders import write_valid

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def api(stack: Any, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{stack.urls['api']}{path}", json=body, timeout=30)


def answered_by(stack: Any, name: str) -> str:
    """The deployment that answers a chat to the model name (X-Modeldrop-Deployment)."""
    response = api(stack, "POST", "/v1/chat/completions", {**CHAT, "model": name})
    assert response.status_code == 200, response.text
    return response.headers["X-Modeldrop-Deployment"]


@pytest.fixture(autouse=True)
def nothing_left_running(revisions_stack):
    """After each test, every running deployment is deleted (the cap leaves room for one)."""
    yield
    deadline = time.monotonic() + 90
    while running := api(revisions_stack, "GET", "/v1/costs").json()["deployments"]:
        assert time.monotonic() < deadline, f"still running: {running}"
        for row in running:
            if row["state"] == "DEPLOYED":
                api(revisions_stack, "DELETE", f"/v1/deployments/{row['id']}")
        time.sleep(0.5)


def wait_deployment(stack: Any, deployment_id: str, state: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api(stack, "GET", f"/v1/deployments/{deployment_id}").json()
        if body.get("state") == state:
            return body
        time.sleep(0.3)
    raise TimeoutError(f"{deployment_id} never reached {state}: {body.get('state')}")


def new_revision(stack: Any, folder, name: str, previous_id: str) -> dict:
    """Upload one file again (a new generation: a new revision) and wait for it to settle; a
    DEPLOYED one also for its promotion (its own write, just after DEPLOYED is recorded)."""
    upload(stack, folder, name, order=["config.json"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = wait_state(stack, name, timeout=120)
        if body["id"] != previous_id:
            if body["state"] == "DEPLOYED":
                wait_serving(stack, name, body["id"])
            return body
        time.sleep(0.3)
    raise TimeoutError(f"no new revision of {name}")


def wait_serving(stack: Any, name: str, deployment_id: str, timeout: float = 10) -> None:
    """Wait until the name's pointer names the deployment (the status read also refreshes the
    api's reused pointer, POINTER_SECONDS, so the next named request goes there)."""
    deadline = time.monotonic() + timeout
    serving = None
    while time.monotonic() < deadline:
        serving = api(stack, "GET", f"/v1/models/{name}").json().get("serving")
        if serving == deployment_id:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name} still serves {serving}, not {deployment_id}")


def deployed(stack: Any, tmp_path, name: str, yaml: str = "") -> tuple[Any, dict]:
    folder = write_valid(tmp_path / name)
    if yaml:
        (folder / "modeldrop.yaml").write_text(yaml)
    upload(stack, folder, name)
    body = wait_state(stack, name, timeout=120)
    assert body["state"] == "DEPLOYED", body["error"]
    return folder, body


def test_a_new_revision_serves_and_the_old_one_is_retired(revisions_stack, tmp_path):
    folder, v1 = deployed(revisions_stack, tmp_path, "rev-retire")
    assert answered_by(revisions_stack, "rev-retire") == v1["id"]
    v2 = new_revision(revisions_stack, folder, "rev-retire", v1["id"])
    assert v2["state"] == "DEPLOYED", v2["error"]
    assert answered_by(revisions_stack, "rev-retire") == v2["id"]
    model = api(revisions_stack, "GET", "/v1/models/rev-retire").json()
    assert model["serving"] == v2["id"]
    assert [r["id"] for r in model["revisions"][:2]] == [v2["id"], v1["id"]]

    retired = wait_deployment(revisions_stack, v1["id"], "UNDEPLOYED", RETIRE_AFTER_SECONDS + 60)
    assert retired["history"][-1]["note"] == f"endpoint deleted (retired: replaced by {v2['id']})"
    assert endpoints_of(revisions_stack, v1["id"]) == []
    assert len(endpoints_of(revisions_stack, v2["id"])) == 1
    assert answered_by(revisions_stack, "rev-retire") == v2["id"]


def test_a_bad_revision_leaves_the_serving_one_answering(revisions_stack, tmp_path):
    folder, v1 = deployed(revisions_stack, tmp_path, "rev-bad")
    (folder / "config.json").write_text("{not json")
    rejected = new_revision(revisions_stack, folder, "rev-bad", v1["id"])
    assert rejected["state"] == "REJECTED"
    assert answered_by(revisions_stack, "rev-bad") == v1["id"]

    write_valid(folder)
    (folder / "modeldrop.yaml").write_text('smoke_test: {expect: "^zzz-never$", max_tokens: 4}\n')
    upload(revisions_stack, folder, "rev-bad")
    failed = wait_state(revisions_stack, "rev-bad", {"FAILED"}, timeout=120)
    assert failed["error"]["code"] == "SMOKE_TEST_FAILED"
    assert answered_by(revisions_stack, "rev-bad") == v1["id"]
    model = api(revisions_stack, "GET", "/v1/models/rev-bad").json()
    assert model["serving"] == v1["id"] and model["id"] == failed["id"]
    assert api(revisions_stack, "GET", f"/v1/deployments/{v1['id']}").json()["state"] == "DEPLOYED"


def test_rollback_within_the_grace(revisions_stack, tmp_path):
    folder, v1 = deployed(revisions_stack, tmp_path, "rev-rollback")
    v2 = new_revision(revisions_stack, folder, "rev-rollback", v1["id"])
    assert v2["state"] == "DEPLOYED", v2["error"]
    response = api(revisions_stack, "POST", "/v1/models/rev-rollback:rollback")
    assert response.status_code == 200, response.text
    assert response.json()["serving"] == v1["id"]
    assert answered_by(revisions_stack, "rev-rollback") == v1["id"]
    # the revision rolled back from is retired like any other non-serving one
    retired = wait_deployment(revisions_stack, v2["id"], "UNDEPLOYED", RETIRE_AFTER_SECONDS + 60)
    assert "retired: replaced by" in retired["history"][-1]["note"]
    again = api(revisions_stack, "POST", "/v1/models/rev-rollback:rollback")
    assert again.status_code == 409 and again.json()["error"]["code"] == "PREVIOUS_NOT_DEPLOYED"


def test_idle_undeploy_then_redeploy(revisions_stack, tmp_path):
    _, v1 = deployed(revisions_stack, tmp_path, "rev-idle", "idle_undeploy_after_seconds: 8\n")
    idle = wait_deployment(revisions_stack, v1["id"], "UNDEPLOYED", timeout=60)
    assert idle["history"][-2]["note"] == "idle: no request for 8 s"
    assert endpoints_of(revisions_stack, v1["id"]) == []
    refused = api(revisions_stack, "POST", "/v1/chat/completions", {**CHAT, "model": "rev-idle"})
    assert refused.status_code == 409 and ":redeploy" in refused.json()["error"]["message"]

    response = api(revisions_stack, "POST", f"/v1/deployments/{v1['id']}:redeploy")
    assert response.status_code == 202 and response.json()["deploy_round"] == 2
    back = wait_deployment(revisions_stack, v1["id"], "DEPLOYED")
    assert back["smoke_test"]["passed"] is True
    assert answered_by(revisions_stack, "rev-idle") == v1["id"]  # it serves its name again
    assert [e.split("-")[-2:] for e in endpoints_of(revisions_stack, v1["id"])] == [["r2", "1"]]


def test_the_cap_blocks_a_second_model_until_the_first_is_deleted(revisions_stack, tmp_path):
    _, first = deployed(revisions_stack, tmp_path, "cap-first")
    costs = api(revisions_stack, "GET", "/v1/costs").json()
    rows = {row["id"]: row for row in costs["deployments"]}
    assert rows[first["id"]]["hourly_usd"] == first["hourly_usd"] > 0
    assert costs["total_hourly_usd"] == pytest.approx(sum(r["hourly_usd"] for r in rows.values()))

    upload(revisions_stack, write_valid(tmp_path / "cap-second"), "cap-second")
    deadline = time.monotonic() + 60
    while not (second := wait_state(revisions_stack, "cap-second", {"VALIDATED"}))["blocked"]:
        assert time.monotonic() < deadline, second
        time.sleep(0.3)
    assert second["blocked"]["code"] == "BUDGET_EXCEEDED" and second["blocked"]["cap"] == 1.0

    api(revisions_stack, "DELETE", f"/v1/deployments/{first['id']}")
    landed = wait_state(revisions_stack, "cap-second", {"DEPLOYED", "FAILED"}, timeout=120)
    assert landed["state"] == "DEPLOYED" and landed["blocked"] is None
