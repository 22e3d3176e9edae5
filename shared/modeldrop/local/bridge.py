"""The GCS -> validate bridge of the local stack.

On Google Cloud, Eventarc delivers `google.cloud.storage.object.v1.finalized` CloudEvents to
the validate function. Locally, fake-gcs-server publishes GCS notifications to Pub/Sub; this
bridge receives them by push, turns each into the CloudEvent Eventarc would send, and POSTs it
to the validate function (in structured mode: an object name need not fit in an HTTP header).
It answers Pub/Sub with the function's outcome, so a validation that failed with a 5xx is
redelivered just as Eventarc retries it; a push that is no GCS notification, or that the
function refuses (4xx), is acknowledged.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from modeldrop import logs
from modeldrop.adapters.pubsub_events import message_parts
from modeldrop.domain.findings import excerpt

# GCS notification eventType -> the CloudEvent type Eventarc uses for it.
EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}
log = logs.get("bridge")


def storage_event(envelope: Any) -> CloudEvent | None:
    """The storage CloudEvent for a Pub/Sub push envelope of a GCS notification; None for
    anything else."""
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        return None
    try:
        attributes, raw = message_parts(message)
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return None
    event_type = EVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None or not isinstance(data, dict):
        return None
    bucket = data.get("bucket") or attributes.get("bucketId")
    name = data.get("name") or attributes.get("objectId")
    if not (isinstance(bucket, str) and isinstance(name, str)):
        return None
    ids = (message.get("messageId"), message.get("message_id"), f"{bucket}/{name}")
    time = data.get("updated") or data.get("timeCreated")
    return CloudEvent(
        {
            "type": event_type,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "subject": f"objects/{name}",
            "id": next(i for i in ids if isinstance(i, str) and i),
            **({"time": time} if isinstance(time, str) else {}),
            "datacontenttype": "application/json",
        },
        {**data, "bucket": bucket, "name": name},
    )


def forward(envelope: Any, target: str, session: requests.Session) -> int:
    """POST the converted event to `target`; the HTTP status to answer Pub/Sub with."""
    event = storage_event(envelope)
    if event is None:
        log.warning("not a GCS notification; acknowledged: %s", excerpt(envelope))
        return 204
    headers, body = to_structured(event)  # binary mode puts the object name in a header
    response = session.post(target, data=body, headers=headers, timeout=600)
    return 502 if response.status_code >= 500 else 204


class Bridge:
    """An HTTP server (in a thread) receiving Pub/Sub pushes and forwarding them to `target`."""

    def __init__(self, target: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    envelope = json.loads(self.rfile.read(length) or b"{}")
                except (ValueError, RecursionError):
                    envelope = None  # not a push envelope: acknowledged by `forward`
                try:
                    status = forward(envelope, target, session)
                except requests.RequestException:
                    status = 502
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Bridge:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
