"""Cloud Function `reconcile`: the periodic tick (Cloud Scheduler -> Pub/Sub modeldrop-tick)."""

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def reconcile(event: CloudEvent) -> None:
    """Poll long-running deploys and undeploys; repair lost claims, messages and notifications."""
    import logging

    from modeldrop.bootstrap import context
    from modeldrop.service.reconcile import reconcile as tick

    report = tick(context())
    logging.getLogger("modeldrop.reconcile").info(
        "tick: %d moved, %d errors", len(report.moved), len(report.errors)
    )
