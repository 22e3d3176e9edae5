"""Poison on the whole local stack: events POSTed to the functions and to the GCS bridge are
acknowledged (2xx) or refused (4xx), never a 5xx that would be delivered again and again; poison
uploads each reach a final state within a minute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.fixtures.local_stack import upload, wait_state
from tests.fixtures.poison_events import CASE_IDS, CASES, DEEP, NOT_NOTIFICATIONS, path

REPORT_LIMIT = 256 * 1024


@pytest.mark.parametrize(("function", "body", "headers"), CASES, ids=CASE_IDS)
def test_a_poison_event_is_acknowledged_or_refused(stack, function, body, headers):
    url = stack.urls[function] + path(function)
    response = requests.post(url, data=body, headers=headers, timeout=60)
    assert response.status_code < 500, response.text[:500]


@pytest.mark.parametrize("pushed", NOT_NOTIFICATIONS.values(), ids=NOT_NOTIFICATIONS)
def test_the_bridge_acknowledges_a_push_that_is_no_gcs_notification(stack, pushed):
    response = requests.post(stack.bridge.url, json=pushed, timeout=60)
    assert response.status_code == 204


def _index(folder: Path, text: str) -> None:
    (folder / "model.safetensors.index.json").write_text(text)


def _config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


UPLOADS = {
    "index-list-values": lambda f: _index(f, '{"weight_map": {"a": ["model.safetensors"]}}'),
    "index-nested-deep": lambda f: _index(f, '{"weight_map": ' + DEEP + "}"),
    "hidden-size-10e400": lambda f: _config(f, hidden_size=10**400),
    "architecture-2mb": lambda f: _config(f, architectures=["A" * 2 * 2**20]),
}


@pytest.mark.parametrize("poison", UPLOADS.values(), ids=UPLOADS)
def test_a_poison_upload_is_rejected_within_a_minute(stack, tiny_model, tmp_path, poison):
    folder = tmp_path / "poison"
    shutil.copytree(tiny_model, folder)
    poison(folder)
    name = f"poison-{tmp_path.name[-12:].lower()}"
    upload(stack, folder, name)
    status = wait_state(stack, name, timeout=60)
    assert status["state"] == "REJECTED", status["error"]
    assert len(json.dumps(status["validation"])) < REPORT_LIMIT


@pytest.mark.parametrize(
    ("name", "state", "code"),
    [("probe-a[b]", "REJECTED", "FOLDER_NAME_UNSUPPORTED"), ("probe ü 模型 x", "DEPLOYED", None)],
)
def test_folder_names_end_to_end(stack, tiny_model, name, state, code):
    upload(stack, tiny_model, name)
    status = wait_state(stack, quote(name, safe=""), timeout=60)
    assert (status["state"], status["model"]) == (state, name), status["error"]
    assert (status["error"] or {}).get("code") == code
