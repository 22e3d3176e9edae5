"""The ServingLogs port over Cloud Logging's REST API (entries.list), without google-cloud-logging.

One JSON request per page, with the environment's Google credentials (anonymous to the local
Vertex AI emulator, which answers the same request); the session, and with it google.auth, is
made on the first read, so building the api's context costs nothing until the route is used.

What is sent (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list):

    POST {MODELDROP_LOGGING_API_ENDPOINT}/v2/entries:list
    {"resourceNames": ["projects/P"], "filter": F, "orderBy": "timestamp desc", "pageSize": N}

pageSize is at most 1000 (the API refuses more), and a page may hold fewer entries than asked
with a nextPageToken: a few pages are followed. F names the serving container's entries of the
deployment's endpoint, AND-ed:

    resource.type="aiplatform.googleapis.com/Endpoint"
    resource.labels.endpoint_id="ID" AND resource.labels.location="REGION"
    labels.deployed_model_id="DMID"            (when the record has a deployed model)
    timestamp>="T"                             (the record's creation, less a clock margin)

The monitored resource of Vertex AI online prediction is aiplatform.googleapis.com/Endpoint with
the labels resource_container, location and endpoint_id
(https://cloud.google.com/monitoring/api/resources#tag_aiplatform, and the Logging list at
https://cloud.google.com/logging/docs/api/v2/resource-list); container logging sends the
stdout and stderr of the serving container there
(https://cloud.google.com/vertex-ai/docs/predictions/online-prediction-logging), each entry
with the deployed model's id in its own `labels.deployed_model_id` (as the queries in public
code read it, e.g. `labels.deployed_model_id="..."` next to `resource.labels.endpoint_id`).
A LogEntry (https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry) has an RFC 3339
`timestamp`, a LogSeverity name in `severity` and one payload: `textPayload`, or `jsonPayload`
(a structured line; its `message` is the text), or `protoPayload` (not container output).
Entries of another shape are skipped, never fatal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from modeldrop.adapters.vertex_rest import GoogleApi, region_of
from modeldrop.domain.deployment import Deployment
from modeldrop.domain.findings import excerpt
from modeldrop.errors import ModeldropError
from modeldrop.service.ports import LogEntry
from modeldrop.settings import Settings

DEFAULT_HOST = "https://logging.googleapis.com"
RESOURCE_TYPE = "aiplatform.googleapis.com/Endpoint"
MAX_LIMIT = 1000  # entries.list refuses a pageSize above 1000
MAX_TEXT = 2000  # characters of one entry's text the api hands out
MAX_PAGES = 5  # pages followed when Cloud Logging answers partial pages
CLOCK_MARGIN = timedelta(minutes=5)  # the record's clock and Cloud Logging's may disagree
TIMEOUT = (10.0, 30.0)
SEVERITIES = frozenset(
    {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}
)
CODE = "LOGS_UNAVAILABLE"


class LogsUnavailable(ModeldropError):
    """The serving log could not be read (Cloud Logging refused or was unreachable)."""

    code = CODE


# -- the request ------------------------------------------------------------------------------


def log_endpoint(deployment: Deployment, project: str) -> str | None:
    """The endpoint whose log is the deployment's: the recorded one, else the one its current
    (or last) placement attempt creates; None before any attempt (no endpoint ever existed)."""
    if deployment.endpoint:
        return deployment.endpoint
    if deployment.region is None:
        return None
    return deployment.attempt_endpoint(project, deployment.region)


def quote(value: str) -> str:
    """A string literal of the Logging query language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def log_filter(endpoint: str, deployed_model_id: str | None, since: datetime | None) -> str:
    """The entries of `endpoint` (projects/P/locations/R/endpoints/ID), of its deployed model
    when given, from `since` on."""
    endpoint_id = endpoint.rstrip("/").rsplit("/", 1)[-1]
    clauses = [
        f"resource.type={quote(RESOURCE_TYPE)}",
        f"resource.labels.endpoint_id={quote(endpoint_id)}",
    ]
    region = region_of(endpoint)
    if region:
        clauses.append(f"resource.labels.location={quote(region)}")
    if deployed_model_id:
        clauses.append(f"labels.deployed_model_id={quote(deployed_model_id)}")
    if since is not None:
        clauses.append(f"timestamp>={quote(rfc3339(since - CLOCK_MARGIN))}")
    return " AND ".join(clauses)


def bounded(limit: int) -> int:
    return max(1, min(MAX_LIMIT, int(limit)))


def list_request(
    project: str, query: str, page_size: int, page_token: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceNames": [f"projects/{project}"],
        "filter": query,
        "orderBy": "timestamp desc",
        "pageSize": bounded(page_size),
    }
    if page_token:
        body["pageToken"] = page_token
    return body


# -- the answer -------------------------------------------------------------------------------


def cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def entry_text(raw: dict[str, Any]) -> str | None:
    """The entry's text: textPayload, jsonPayload.message, or the jsonPayload as JSON."""
    text = raw.get("textPayload")
    if isinstance(text, str):
        return text
    payload = raw.get("jsonPayload")
    if isinstance(payload, dict):
        message = payload.get("message")
        if isinstance(message, str):
            return message
        try:
            return json.dumps(payload, separators=(",", ":"), sort_keys=True)[: MAX_TEXT + 1]
        except (TypeError, ValueError):
            return None
    return None


def valid_time(value: Any) -> bool:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def parse_entry(raw: Any) -> LogEntry | None:
    """One LogEntry JSON as the port's LogEntry; None for an entry of another shape."""
    if not isinstance(raw, dict):
        return None
    at = raw.get("timestamp") or raw.get("receiveTimestamp")
    text = entry_text(raw)
    if not valid_time(at) or text is None:
        return None
    severity = raw.get("severity")
    if not isinstance(severity, str) or severity not in SEVERITIES:
        severity = "DEFAULT"
    return LogEntry(at=str(at), severity=severity, text=cut(text.rstrip("\r\n")))


def parse_page(body: Any) -> tuple[list[LogEntry], str | None]:
    """The entries of an entries.list answer and its nextPageToken (None after the last)."""
    if not isinstance(body, dict):
        raise LogsUnavailable(
            "Cloud Logging answered something other than a list of entries.",
            "Check MODELDROP_LOGGING_API_ENDPOINT.",
        )
    raw = body.get("entries")
    entries = [e for e in map(parse_entry, raw if isinstance(raw, list) else []) if e]
    token = body.get("nextPageToken")
    return entries, token if isinstance(token, str) and token else None


def failure(response: requests.Response) -> LogsUnavailable:
    """A Cloud Logging error answer (google.rpc.Status JSON, or anything) as the port's error."""
    try:
        status = response.json().get("error", {})
        message = str(status.get("message") or "")
    except (ValueError, AttributeError):
        message = response.text
    said = f"Cloud Logging answered HTTP {response.status_code}: {excerpt(message, 500)}"
    if response.status_code in (401, 403):
        hint = (
            "The function's service account needs roles/logging.viewer on the project "
            "(infra/terraform grants it)."
        )
    elif response.status_code == 429:
        hint = "Cloud Logging's read quota is spent for now; try again in a minute."
    elif response.status_code >= 500:
        hint = "Cloud Logging is unavailable; try again shortly."
    else:
        hint = "Check MODELDROP_LOGGING_API_ENDPOINT and the project."
    return LogsUnavailable(said, hint)


class CloudServingLogs(GoogleApi):
    """The ServingLogs port over Cloud Logging's entries.list."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__(settings, session)
        self.url = f"{settings.logging_api_endpoint or DEFAULT_HOST}/v2/entries:list"

    def newest(self, deployment: Deployment, limit: int) -> list[LogEntry]:
        endpoint = log_endpoint(deployment, self.settings.project)
        if endpoint is None:
            return []
        limit = bounded(limit)
        query = log_filter(endpoint, deployment.deployed_model_id, deployment.created_at)
        entries: list[LogEntry] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            body = list_request(self.settings.project, query, limit - len(entries), token)
            page, token = parse_page(self._post(body))
            entries += page
            if len(entries) >= limit or token is None:
                break
        return entries[:limit]

    def _post(self, body: dict[str, Any]) -> Any:
        try:
            response = self.session.post(self.url, json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise LogsUnavailable(
                f"Cloud Logging could not be reached: {excerpt(str(exc), 300)}",
                "Try again shortly; check MODELDROP_LOGGING_API_ENDPOINT.",
            ) from exc
        except Exception as exc:  # google.auth: no credentials, or they cannot be refreshed
            if type(exc).__module__.startswith("google.auth"):
                raise LogsUnavailable(
                    f"No usable Google credentials to read Cloud Logging: {excerpt(str(exc))}",
                    "Run with a service account that has roles/logging.viewer.",
                ) from exc
            raise
        if response.status_code >= 400:
            raise failure(response)
        try:
            return response.json()
        except ValueError as exc:
            raise LogsUnavailable(
                "Cloud Logging answered a body that is not JSON.",
                "Check MODELDROP_LOGGING_API_ENDPOINT.",
            ) from exc
