"""Cloud Function `deploy`: a deployment id arrived on the modeldrop-validated topic."""

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def deploy(event: CloudEvent) -> None:
    """Claim the validated deployment and start its Vertex AI deploy.

    Retryable Vertex errors raise, so Pub/Sub redelivers the message.
    """
    import logging

    from modeldrop.adapters.pubsub_queue import read_validated
    from modeldrop.bootstrap import context
    from modeldrop.service.deploy import on_validated

    ctx = context()
    try:
        message = event.data.get("message") if isinstance(event.data, dict) else None
        deployment_id = read_validated(message or {})
    except ValueError as exc:
        logging.getLogger("modeldrop.deploy").warning("message ignored: %s", exc)
        return
    on_validated(ctx, deployment_id)
