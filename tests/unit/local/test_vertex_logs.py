"""The Vertex emulator's serving logs: engine log files followed, answered as Cloud Logging's
entries.list (filter, order, paging, refusals as the real API words them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldrop.adapters.serving_logs import list_request, log_filter, parse_page
from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.logs import LogBook, parse_filter, severity_of

EP = "projects/p1/locations/us-central1/endpoints/ep-a"
OTHER = "projects/p1/locations/us-central1/endpoints/ep-b"


@pytest.fixture
def book():
    logs = LogBook(poll_s=3600)  # reads on demand only: the test decides when lines arrive
    yield logs
    logs.shutdown()


def write(path: Path, *lines: str) -> None:
    with open(path, "a") as log:
        log.write("".join(line + "\n" for line in lines))


def texts(answer) -> list[str]:
    return [e["textPayload"] for e in answer["entries"]]


def request(query: str = "", **fields):
    return {"resourceNames": ["projects/p1"], "filter": query, **fields}


def test_each_engine_line_becomes_an_entry_of_its_endpoint(book, tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    write(a, "$ python -m server", "INFO:     Started server process [7]")
    log_a = book.follow(EP, a)
    book.follow(OTHER, b)
    write(b, "WARNING 01-02 12:00:00 [engine.py:1] slow")
    answer = book.list_entries(request('resource.labels.endpoint_id="ep-a"'))
    assert texts(answer) == ["$ python -m server", "INFO:     Started server process [7]"]
    first = answer["entries"][1]
    assert first["resource"] == {
        "type": "aiplatform.googleapis.com/Endpoint",
        "labels": {"resource_container": "p1", "location": "us-central1", "endpoint_id": "ep-a"},
    }
    assert first["severity"] == "INFO" and first["timestamp"].endswith("Z")
    assert "labels" not in first  # no deployed model until the deploy finishes
    book.deployed(log_a, "777")
    labelled = book.list_entries(request('labels.deployed_model_id="777"'))
    assert len(labelled["entries"]) == 2
    assert labelled["entries"][0]["labels"] == {"deployed_model_id": "777"}


def test_newest_first_paged_and_page_size_honoured(book, tmp_path):
    path = tmp_path / "e.log"
    book.follow(EP, path)
    for i in range(5):
        write(path, f"line {i}")
        book.read_all()  # one read per line: distinct read order
    newest = book.list_entries(request(orderBy="timestamp desc", pageSize=2))
    assert texts(newest) == ["line 4", "line 3"] and newest["nextPageToken"]
    rest = book.list_entries(
        request(orderBy="timestamp desc", pageSize=2, pageToken=newest["nextPageToken"])
    )
    assert texts(rest) == ["line 2", "line 1"]
    last = book.list_entries(
        request(orderBy="timestamp desc", pageSize=2, pageToken=rest["nextPageToken"])
    )
    assert texts(last) == ["line 0"] and "nextPageToken" not in last
    assert texts(book.list_entries(request(pageSize=1))) == ["line 0"]  # asc by default


def test_a_failed_engines_last_partial_line_is_kept_after_it_stops(book, tmp_path):
    path = tmp_path / "failed.log"
    log = book.follow(EP, path)
    with open(path, "w") as out:
        out.write("Traceback (most recent call last):\nsafetensors_rust.SafetensorError: bad")
    book.read_all()
    assert book.lines_of(EP) == ["Traceback (most recent call last):"]
    book.close(log)
    assert book.lines_of(EP)[-1] == "safetensors_rust.SafetensorError: bad"
    write(path, "written after the stop")
    assert len(book.lines_of(EP)) == 2  # no longer followed, still answered


def test_the_filter_the_adapter_sends_is_understood(book, tmp_path):
    from datetime import UTC, datetime, timedelta

    path = tmp_path / "e.log"
    log = book.follow(EP, path)
    write(path, "ERROR:    boom")
    book.deployed(log, "55")
    since = datetime.now(UTC) - timedelta(minutes=1)
    body = list_request("p1", log_filter(EP, "55", since), 10)
    entries, token = parse_page(book.list_entries(body))
    assert [(e.severity, e.text) for e in entries] == [("ERROR", "ERROR:    boom")]
    assert token is None
    later = list_request("p1", log_filter(EP, "55", datetime.now(UTC) + timedelta(hours=1)), 10)
    assert book.list_entries(later) == {"entries": []}
    assert book.list_entries(list_request("p1", log_filter(EP, "56", since), 10)) == {"entries": []}
    assert book.list_entries(list_request("p2", log_filter(EP, "55", since), 10)) == {"entries": []}


@pytest.mark.parametrize(
    "query",
    [
        'jsonPayload.message="x"',
        'resource.labels.endpoint_id!="x"',
        'resource.labels.endpoint_id="x" OR resource.type="y"',
        'timestamp="2026-01-01T00:00:00Z"',
        'timestamp>="yesterday"',
        'timestamp>="2026-01-01T00:00:00"',  # no time zone
        'resource.labels.endpoint_id="unterminated',
        "(resource.type=x)",
    ],
)
def test_filters_the_emulator_does_not_implement_are_invalid_arguments(book, query):
    with pytest.raises(RpcError) as caught:
        book.list_entries(request(query))
    assert (caught.value.http_status, caught.value.status) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"filter": ""},  # no resourceNames
        {"resourceNames": ["organizations/1"]},
        {"resourceNames": ["projects/p1"], "pageSize": 1001},
        {"resourceNames": ["projects/p1"], "pageSize": -1},
        {"resourceNames": ["projects/p1"], "pageSize": "many"},
        {"resourceNames": ["projects/p1"], "orderBy": "severity desc"},
        {"resourceNames": ["projects/p1"], "pageToken": "not-ours"},
        {"resourceNames": ["projects/p1"], "filter": 7},
    ],
)
def test_bad_requests_are_invalid_arguments(book, body):
    with pytest.raises(RpcError) as caught:
        book.list_entries(body)
    assert caught.value.http_status == 400


def test_filters_and_severities_are_read():
    conditions = parse_filter(
        'resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id=ep-a'
        '\ntimestamp>="2026-01-01T00:00:00.123456789Z" severity=ERROR'
    )
    assert [(c.field, c.op, c.value) for c in conditions] == [
        ("resource.type", "=", "aiplatform.googleapis.com/Endpoint"),
        ("resource.labels.endpoint_id", "=", "ep-a"),
        ("timestamp", ">=", "2026-01-01T00:00:00.123456789Z"),
        ("severity", "=", "ERROR"),
    ]
    assert parse_filter("") == [] and parse_filter(None) == []
    assert severity_of("INFO:     Uvicorn running") == "INFO"
    assert severity_of("WARNING 01-02 12:00:00 [x.py:1] y") == "WARNING"
    assert severity_of("[ERROR] no") == "ERROR"
    assert severity_of("WARN: old style") == "WARNING"
    assert severity_of("Traceback (most recent call last):") == "DEFAULT"
    assert severity_of("INFORMATION") == "DEFAULT"
