"""Cloud Function `validate`: an object was finalized in the models bucket (Eventarc)."""

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def validate(event: CloudEvent) -> None:
    """Decide whether the object's folder is complete; validate and record it."""
    import logging

    from modeldrop.bootstrap import context
    from modeldrop.service.upload import on_object_finalized

    ctx = context()
    data = event.data if isinstance(event.data, dict) else {}
    bucket, name = data.get("bucket"), data.get("name")
    if not (isinstance(bucket, str) and isinstance(name, str)):
        logging.getLogger("modeldrop.validate").warning("event without bucket/name ignored")
        return
    on_object_finalized(ctx, bucket, name)
