"""Cloud Function `validate`: an object was finalized in the models bucket (Eventarc)."""

import functions_framework
from cloudevents.http import CloudEvent

from modeldrop.bootstrap import answer_malformed_requests

answer_malformed_requests()


@functions_framework.cloud_event
def validate(event: CloudEvent) -> None:
    """Decide whether the object's folder is complete; validate and record it.

    Only a retryable failure (storage or Firestore unavailable) raises, to be delivered again.
    """
    from modeldrop import logs
    from modeldrop.bootstrap import context, run_event
    from modeldrop.domain.findings import excerpt
    from modeldrop.service.validate import on_object_finalized

    ctx = context()
    data = event.data if isinstance(event.data, dict) else {}
    bucket, name = data.get("bucket"), data.get("name")
    if not (isinstance(bucket, str) and isinstance(name, str)):
        logs.get("validate").warning("event without bucket/name ignored: %s", excerpt(event.data))
        return
    run_event("validate", lambda: on_object_finalized(ctx, bucket, name))
