"""Cloud Function `reconcile`: the periodic tick (Cloud Scheduler -> Pub/Sub modeldrop-tick)."""

import functions_framework
from cloudevents.http import CloudEvent

from modeldrop.bootstrap import answer_malformed_requests

answer_malformed_requests()


@functions_framework.cloud_event
def reconcile(event: CloudEvent) -> None:
    """Poll long-running deploys and undeploys; repair lost claims, messages and notifications.

    A tick is always acknowledged (the next one comes a minute later), whatever it carries.
    """
    from modeldrop import logs
    from modeldrop.bootstrap import context, run_event
    from modeldrop.service.reconcile import reconcile as tick

    ctx = context()

    def run() -> None:
        report = tick(ctx)
        logs.get("reconcile").info(
            "tick: %d moved, %d errors", len(report.moved), len(report.errors)
        )

    run_event("reconcile", run, redeliver=False)
