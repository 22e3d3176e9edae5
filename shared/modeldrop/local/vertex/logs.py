"""The serving containers' logs, kept per endpoint and deployed model, answered as Cloud Logging.

On Google Cloud a deployed model's container output (stdout and stderr) lands in Cloud Logging
under the monitored resource aiplatform.googleapis.com/Endpoint (labels resource_container,
location, endpoint_id), each entry labelled with its deployed_model_id; clients read it with
`POST https://logging.googleapis.com/v2/entries:list`. The emulator follows each engine's log
file (its whole output, the engines that failed to start included: their file stays readable)
and answers the same request on its control-plane port:

    POST /v2/entries:list
    {"resourceNames": ["projects/P", ...], "filter": "...", "orderBy": "timestamp desc",
     "pageSize": N, "pageToken": "..."}
    -> {"entries": [LogEntry, ...], "nextPageToken": "..."}  (no token after the last page)

A LogEntry has timestamp (when the emulator first read the line), receiveTimestamp, severity
(the level a line starts with, such as uvicorn's "INFO:" or vLLM's "WARNING 01-02 ...";
DEFAULT for a line naming none), textPayload, insertId, logName, resource {type, labels} and,
once the deploy finished, labels {deployed_model_id}.

The filter is a conjunction (AND, or whitespace) of comparisons the emulator implements:
`resource.type`, `resource.labels.endpoint_id`, `resource.labels.location`,
`resource.labels.resource_container`, `labels.deployed_model_id`, `logName` and `severity`
with `=`, and `timestamp` with `>=`, `>`, `<=`, `<`; values quoted ("...") or bare. Anything else
is refused with 400 INVALID_ARGUMENT (the real API understands far more; the emulator refuses
what it does not implement rather than match nothing). pageSize is 0 (50) to 1000; orderBy
"timestamp asc" (the default) or "timestamp desc", as the real API.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modeldrop.local.vertex.errors import invalid
from modeldrop.local.vertex.resources import now

RESOURCE_TYPE = "aiplatform.googleapis.com/Endpoint"
LOG_ID = "aiplatform.googleapis.com%2Fprediction_container"  # the container log's name
DEFAULT_PAGE = 50
MAX_PAGE = 1000
MAX_LINES = 10_000  # lines kept per engine log (the oldest go first)
MAX_LINE_CHARS = 16_384
POLL_S = 0.25
SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
_LEVEL = re.compile(r"^\s*\[?(DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
_VALUE = r'"(?:[^"\\]|\\.)*"|[^\s"()]+'
_CLAUSE = re.compile(
    rf"\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>>=|<=|!=|=|>|<|:)\s*(?P<value>{_VALUE})"
)
_AND = re.compile(r"\s+AND\s+|\s+")
EQUALITY_FIELDS = {
    "resource.type",
    "resource.labels.endpoint_id",
    "resource.labels.location",
    "resource.labels.resource_container",
    "labels.deployed_model_id",
    "logName",
    "severity",
}
TIME_OPS = {">=", ">", "<=", "<"}


def severity_of(line: str) -> str:
    found = _LEVEL.match(line)
    if not found:
        return "DEFAULT"
    level = found.group(1)
    return _ALIASES.get(level, level)


@dataclass
class Line:
    seq: int
    timestamp: str
    severity: str
    text: str


@dataclass
class EngineLog:
    """One engine's output file, followed: each complete line is stamped when first read."""

    endpoint: str  # projects/P/locations/L/endpoints/ID
    path: Path
    deployed_model_id: str | None = None
    lines: deque[Line] = field(default_factory=lambda: deque(maxlen=MAX_LINES))
    following: bool = True
    _offset: int = 0
    _partial: bytes = b""

    @property
    def labels(self) -> dict[str, str]:
        parts = self.endpoint.split("/")
        return {"resource_container": parts[1], "location": parts[3], "endpoint_id": parts[5]}

    def read(self, next_seq: Any, final: bool = False) -> None:
        """Add the lines written since the last read (a last partial line too when `final`)."""
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except OSError:
            return
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if final and self._partial:
            chunks.append(self._partial)
            self._partial = b""
        stamp = now()
        for chunk in chunks:
            text = chunk.decode("utf-8", "replace").rstrip("\r")[:MAX_LINE_CHARS]
            if text.strip():
                self.lines.append(Line(next_seq(), stamp, severity_of(text), text))

    def entry(self, line: Line) -> dict[str, Any]:
        labels = self.labels
        body: dict[str, Any] = {
            "insertId": f"{line.seq:016d}",
            "logName": f"projects/{labels['resource_container']}/logs/{LOG_ID}",
            "resource": {"type": RESOURCE_TYPE, "labels": labels},
            "timestamp": line.timestamp,
            "receiveTimestamp": line.timestamp,
            "severity": line.severity,
            "textPayload": line.text,
        }
        if self.deployed_model_id:
            body["labels"] = {"deployed_model_id": self.deployed_model_id}
        return body


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _time(value: str, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"Invalid timestamp {value!r} in {what}.") from None
    if parsed.tzinfo is None:
        raise invalid(f"The timestamp {value!r} in {what} needs a time zone (e.g. Z).")
    return parsed


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    def holds(self, entry: dict[str, Any]) -> bool:
        if self.field == "timestamp":
            at, bound = _time(entry["timestamp"], "an entry"), _time(self.value, "the filter")
            return {
                ">=": at >= bound,
                ">": at > bound,
                "<=": at <= bound,
                "<": at < bound,
            }[self.op]
        node: Any = entry
        for part in self.field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node == self.value


def parse_filter(text: Any) -> list[Condition]:
    """The conditions of a filter (all must hold); 400 INVALID_ARGUMENT for what the emulator
    does not implement."""
    if text is None:
        return []
    if not isinstance(text, str):
        raise invalid(f"Invalid value at 'filter' (TYPE_STRING), {text!r}")
    conditions: list[Condition] = []
    rest = text.strip()
    while rest:
        found = _CLAUSE.match(rest)
        if not found:
            raise invalid(f"Unparseable filter: {text!r} (the emulator reads field=value AND ...)")
        name, op, value = found["field"], found["op"], _unquote(found["value"])
        if name == "timestamp":
            if op not in TIME_OPS:
                raise invalid(f"The emulator compares timestamp with {sorted(TIME_OPS)}, not {op}.")
            _time(value, "the filter")
        elif name not in EQUALITY_FIELDS or op != "=":
            raise invalid(
                f"The emulator does not implement the filter term {found.group(0).strip()!r}; "
                f"it reads {sorted(EQUALITY_FIELDS)} with = and timestamp with >=, >, <=, <."
            )
        conditions.append(Condition(name, op, value))
        rest = rest[found.end() :]
        separator = _AND.match(rest)
        if separator:
            rest = rest[separator.end() :]
        elif rest:
            raise invalid(f"Unparseable filter: {text!r}")
    return conditions


def _page_size(value: Any) -> int:
    if value in (None, ""):
        return DEFAULT_PAGE
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), {value!r}")
    try:
        size = int(value)
    except ValueError:
        raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), {value!r}") from None
    if size < 0 or size > MAX_PAGE:
        raise invalid(f"pageSize must be in 0..{MAX_PAGE}, not {size}.")
    return size or DEFAULT_PAGE


def _projects(value: Any) -> set[str]:
    if not isinstance(value, list) or not value:
        raise invalid("resourceNames is required: the parents to list entries of (projects/P).")
    projects = set()
    for name in value:
        parts = name.split("/") if isinstance(name, str) else []
        if len(parts) != 2 or parts[0] != "projects" or not parts[1]:
            raise invalid(f"The emulator lists entries of projects/P only, not {name!r}.")
        projects.add(parts[1])
    return projects


class LogBook:
    """Every engine's log, followed in one background thread; all methods are thread-safe."""

    def __init__(self, poll_s: float = POLL_S) -> None:
        self.poll_s = poll_s
        self._logs: list[EngineLog] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def follow(self, endpoint: str, path: Path) -> EngineLog:
        """Start following an engine's log file (it may not exist yet)."""
        log = EngineLog(endpoint, path)
        with self._lock:
            self._logs.append(log)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="vertex-logs", daemon=True)
                self._thread.start()
        return log

    def deployed(self, log: EngineLog, deployed_model_id: str) -> None:
        """The deploy finished: the engine's entries (all of them) carry its deployed model."""
        with self._lock:
            log.deployed_model_id = deployed_model_id

    def close(self, log: EngineLog) -> None:
        """The engine stopped: read its last lines and stop following (its lines are kept)."""
        with self._lock:
            if log.following:
                log.read(self._next_seq, final=True)
                log.following = False

    def read_all(self) -> None:
        with self._lock:
            for log in self._logs:
                if log.following:
                    log.read(self._next_seq)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            with contextlib.suppress(Exception):  # a log that cannot be read is skipped
                self.read_all()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            for log in self._logs:
                if log.following:
                    log.read(self._next_seq, final=True)
                    log.following = False

    def lines_of(self, endpoint: str) -> list[str]:
        """Every line kept for `endpoint`, oldest first (tests, /emulator/state)."""
        self.read_all()
        with self._lock:
            lines = [
                (line.seq, line.text)
                for log in self._logs
                if log.endpoint == endpoint
                for line in log.lines
            ]
        return [text for _, text in sorted(lines)]

    def list_entries(self, body: Any) -> dict[str, Any]:
        """entries.list: the request's body in, its answer out."""
        if not isinstance(body, dict):
            raise invalid("The request body must be a ListLogEntriesRequest JSON object.")
        names = body.get("resourceNames")
        legacy = body.get("projectIds")  # deprecated, still accepted
        if not names and isinstance(legacy, list):
            names = [f"projects/{p}" for p in legacy]
        projects = _projects(names)
        conditions = parse_filter(body.get("filter"))
        order = str(body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            raise invalid(f'orderBy must be "timestamp asc" or "timestamp desc", not {order!r}.')
        size = _page_size(body.get("pageSize"))
        token = body.get("pageToken") or ""
        if not isinstance(token, str) or (token and not token.isdecimal()):
            raise invalid(f"Invalid pageToken {token!r}.")
        self.read_all()
        with self._lock:
            found = [
                (line.timestamp, line.seq, log.entry(line))
                for log in self._logs
                if log.labels["resource_container"] in projects
                for line in log.lines
            ]
        matching = [
            (at, seq, entry)
            for at, seq, entry in found
            if all(condition.holds(entry) for condition in conditions)
        ]
        matching.sort(key=lambda item: (item[0], item[1]), reverse=order == "timestamp desc")
        start = int(token or 0)
        page = [entry for _, _, entry in matching[start : start + size]]
        answer: dict[str, Any] = {"entries": page}
        if start + size < len(matching):
            answer["nextPageToken"] = str(start + size)
        return answer
