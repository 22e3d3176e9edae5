"""The GCS -> validate bridge of the local stack.

On Google Cloud, Eventarc delivers `google.cloud.storage.object.v1.finalized` CloudEvents to
the validate function. Locally, fake-gcs-server publishes GCS notifications to Pub/Sub; this
bridge receives them by push, turns each into the CloudEvent Eventarc would send, and POSTs it
to the validate function. It answers Pub/Sub with the function's outcome, so a failed
validation is redelivered just as Eventarc retries it.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

# GCS notification eventType -> the CloudEvent type Eventarc uses for it.
EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}


def storage_event(envelope: dict[str, Any]) -> CloudEvent | None:
    """The storage CloudEvent for a Pub/Sub push envelope of a GCS notification (or None)."""
    message = envelope.get("message") or {}
    attributes = message.get("attributes") or {}
    event_type = EVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None:
        return None
    data = json.loads(base64.b64decode(message.get("data") or "e30="))
    bucket = data.get("bucket") or attributes.get("bucketId")
    name = data.get("name") or attributes.get("objectId")
    return CloudEvent(
        {
            "type": event_type,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "subject": f"objects/{name}",
            "id": message.get("messageId") or message.get("message_id") or f"{bucket}/{name}",
            "time": data.get("updated") or data.get("timeCreated"),
            "datacontenttype": "application/json",
        },
        {**data, "bucket": bucket, "name": name},
    )


def forward(envelope: dict[str, Any], target: str, session: requests.Session) -> int:
    """POST the converted event to `target`; the HTTP status to answer Pub/Sub with."""
    event = storage_event(envelope)
    if event is None:
        return 204  # not an event validate handles: acknowledge it
    headers, body = to_binary(event)
    response = session.post(target, data=body, headers=headers, timeout=600)
    return 204 if response.ok else 502


class Bridge:
    """An HTTP server (in a thread) receiving Pub/Sub pushes and forwarding them to `target`."""

    def __init__(self, target: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    envelope = json.loads(self.rfile.read(length) or b"{}")
                    status = forward(envelope, target, session)
                except (ValueError, requests.RequestException):
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
