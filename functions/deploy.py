"""Cloud Function `deploy`: a deployment id arrived on the modeldrop-validated topic."""

import functions_framework
from cloudevents.http import CloudEvent

from modeldrop.bootstrap import answer_malformed_requests

answer_malformed_requests()


@functions_framework.cloud_event
def deploy(event: CloudEvent) -> None:
    """Claim the validated deployment and start its Vertex AI deploy.

    Only a retryable failure (Vertex AI or Firestore unavailable, attempts left) raises, so
    Pub/Sub delivers the message again; a message that names no deployment is acknowledged.
    """
    from modeldrop.adapters.pubsub_queue import read_validated
    from modeldrop.bootstrap import context, run_event
    from modeldrop.service.deploy import on_validated

    ctx = context()
    message = event.data.get("message") if isinstance(event.data, dict) else None
    run_event("deploy", lambda: on_validated(ctx, read_validated(message)))
