"""The Cloud Logging adapter's pure parts: the entries.list request and filter it builds, and
how it reads entries (odd shapes skipped, texts bounded); then its paging and errors over a
scripted session."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from modeldrop.adapters.serving_logs import (
    MAX_TEXT,
    CloudServingLogs,
    LogsUnavailable,
    list_request,
    log_endpoint,
    log_filter,
    parse_entry,
    parse_page,
)
from modeldrop.domain.deployment import State, new_deployment
from modeldrop.service.ports import LogEntry
from modeldrop.settings import Settings

T0 = datetime(2026, 11, 24, 9, 30, 15, tzinfo=UTC)
ENDPOINT = "projects/p1/locations/europe-west4/endpoints/md-alpha-1"
SETTINGS = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p1", "MODELDROP_VERTEX_ANONYMOUS": "true"})


def record(**changes: Any):
    d = new_deployment("bucket", "models/alpha", "f" * 64, 1, T0)
    return replace(d, **changes)


def placement(region: str = "europe-west4") -> dict[str, Any]:
    return {"attempt": 1, "region": region, "machine_spec": {}, "spot": False}


# -- the request ------------------------------------------------------------------------------


def test_the_filter_names_the_endpoint_its_region_the_deployed_model_and_a_start():
    assert log_filter(ENDPOINT, "4242", T0) == (
        'resource.type="aiplatform.googleapis.com/Endpoint" AND '
        'resource.labels.endpoint_id="md-alpha-1" AND '
        'resource.labels.location="europe-west4" AND '
        'labels.deployed_model_id="4242" AND '
        'timestamp>="2026-11-24T09:25:15Z"'  # five minutes of clock margin
    )


def test_without_a_deployed_model_or_start_the_filter_is_the_endpoint_alone():
    assert log_filter(ENDPOINT, None, None) == (
        'resource.type="aiplatform.googleapis.com/Endpoint" AND '
        'resource.labels.endpoint_id="md-alpha-1" AND '
        'resource.labels.location="europe-west4"'
    )


def test_filter_values_are_quoted_literals():
    odd = log_filter('projects/p/locations/r/endpoints/a"b\\c', None, None)
    assert 'resource.labels.endpoint_id="a\\"b\\\\c"' in odd


def test_the_request_lists_the_project_newest_first_with_a_bounded_page():
    assert list_request("p1", "F", 20) == {
        "resourceNames": ["projects/p1"],
        "filter": "F",
        "orderBy": "timestamp desc",
        "pageSize": 20,
    }
    assert list_request("p1", "F", 5000)["pageSize"] == 1000  # the API refuses more
    assert list_request("p1", "F", 0)["pageSize"] == 1
    assert list_request("p1", "F", 7, "tok")["pageToken"] == "tok"


def test_the_endpoint_is_the_recorded_one_else_the_current_attempts():
    assert log_endpoint(record(endpoint=ENDPOINT), "p1") == ENDPOINT
    d = record(state=State.DEPLOYING, placement=placement())
    assert log_endpoint(d, "p1") == f"projects/p1/locations/europe-west4/endpoints/{d.vertex_id}"
    assert log_endpoint(record(), "p1") is None  # no attempt yet: no endpoint ever existed


# -- the answer -------------------------------------------------------------------------------


def entry(**fields: Any) -> dict[str, Any]:
    base = {
        "timestamp": "2026-11-24T09:31:00.123456789Z",
        "severity": "ERROR",
        "textPayload": "Traceback (most recent call last):\n",
        "resource": {"type": "aiplatform.googleapis.com/Endpoint", "labels": {}},
    }
    return {**base, **fields}


def test_a_text_entry_is_read_with_its_time_severity_and_line():
    assert parse_entry(entry()) == LogEntry(
        at="2026-11-24T09:31:00.123456789Z",
        severity="ERROR",
        text="Traceback (most recent call last):",
    )


def test_a_json_entry_gives_its_message_or_itself():
    structured = entry(textPayload=None, jsonPayload={"message": "loaded", "level": 20})
    assert parse_entry(structured).text == "loaded"
    bare = entry(textPayload=None, jsonPayload={"b": 1, "a": [2]})
    assert parse_entry(bare).text == '{"a":[2],"b":1}'


def test_an_unknown_or_missing_severity_is_default():
    assert parse_entry(entry(severity=300)).severity == "DEFAULT"
    assert parse_entry(entry(severity="LOUD")).severity == "DEFAULT"
    no_severity = entry()
    del no_severity["severity"]
    assert parse_entry(no_severity).severity == "DEFAULT"


def test_a_long_text_is_cut():
    text = parse_entry(entry(textPayload="x" * 50_000)).text
    assert len(text) == MAX_TEXT and text.endswith("…")
    assert len(parse_entry(entry(textPayload=None, jsonPayload={"k": "y" * 9000})).text) == MAX_TEXT


@pytest.mark.parametrize(
    "odd",
    [
        None,
        "a line",
        ["list"],
        {},
        entry(timestamp=None, receiveTimestamp=None),
        entry(timestamp="yesterday"),
        entry(timestamp=12345),
        entry(textPayload=None),  # no payload
        entry(textPayload=None, protoPayload={"@type": "type.googleapis.com/AuditLog"}),
        entry(textPayload=42),
        entry(textPayload=None, jsonPayload="not an object"),
    ],
)
def test_entries_of_another_shape_are_skipped(odd):
    assert parse_entry(odd) is None


def test_a_page_keeps_the_good_entries_and_its_token():
    page, token = parse_page({"entries": [entry(), "junk", entry(severity="INFO")], "x": 1})
    assert [e.severity for e in page] == ["ERROR", "INFO"] and token is None
    assert parse_page({"nextPageToken": "t2"}) == ([], "t2")
    assert parse_page({"entries": "nope", "nextPageToken": 3}) == ([], None)
    with pytest.raises(LogsUnavailable):
        parse_page(["not", "a", "page"])


# -- paging and errors over a scripted session -----------------------------------------------


class Session:
    """Answers POSTs from a script of (status, body) or exceptions; keeps the requests."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        self.sent.append((url, kwargs["json"]))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return response


def texts(entries: list[LogEntry]) -> list[str]:
    return [e.text for e in entries]


def deployed():
    return record(endpoint=ENDPOINT, deployed_model_id="4242", placement=placement())


def test_newest_posts_the_request_and_follows_partial_pages_up_to_the_limit():
    session = Session(
        (200, {"entries": [entry(textPayload="c")], "nextPageToken": "t1"}),
        (200, {"nextPageToken": "t2"}),  # an empty partial page
        (200, {"entries": [entry(textPayload="b"), entry(textPayload="a")], "nextPageToken": "t3"}),
    )
    logs = CloudServingLogs(SETTINGS, session=session)
    assert texts(logs.newest(deployed(), 2)) == ["c", "b"]
    url, body = session.sent[0]
    assert url == "https://logging.googleapis.com/v2/entries:list"
    assert body["resourceNames"] == ["projects/p1"] and body["pageSize"] == 2
    assert 'labels.deployed_model_id="4242"' in body["filter"]
    assert [b.get("pageToken") for _, b in session.sent] == [None, "t1", "t2"]
    assert session.sent[2][1]["pageSize"] == 1  # only what is still missing


def test_newest_asks_nothing_before_the_first_attempt():
    session = Session()
    assert CloudServingLogs(SETTINGS, session=session).newest(record(), 10) == []
    assert session.sent == []


def test_the_host_comes_from_the_setting():
    settings = replace(SETTINGS, logging_api_endpoint="http://127.0.0.1:8090")
    session = Session((200, {}))
    CloudServingLogs(settings, session=session).newest(deployed(), 5)
    assert session.sent[0][0] == "http://127.0.0.1:8090/v2/entries:list"


@pytest.mark.parametrize(
    ("answer", "hint_has"),
    [
        (
            (403, {"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}),
            "roles/logging.viewer",
        ),
        (
            (429, {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}),
            "quota",
        ),
        ((503, b"<html>down</html>"), "try again"),
        (
            (400, {"error": {"code": 400, "message": "bad filter"}}),
            "MODELDROP_LOGGING_API_ENDPOINT",
        ),
        ((200, b"not json"), "MODELDROP_LOGGING_API_ENDPOINT"),
        (requests.ConnectionError("refused"), "MODELDROP_LOGGING_API_ENDPOINT"),
        (requests.Timeout("slow"), "Try again"),
    ],
)
def test_failures_are_logs_unavailable_with_a_hint(answer, hint_has):
    logs = CloudServingLogs(SETTINGS, session=Session(answer))
    with pytest.raises(LogsUnavailable) as caught:
        logs.newest(deployed(), 5)
    assert caught.value.code == "LOGS_UNAVAILABLE"
    assert hint_has.lower() in caught.value.hint.lower()


def test_building_the_adapter_makes_no_session():
    logs = CloudServingLogs(replace(SETTINGS, vertex_anonymous=False))
    assert "session" not in vars(logs)  # made (with google.auth) on the first read
