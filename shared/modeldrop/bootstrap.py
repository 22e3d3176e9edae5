"""Wire the real adapters into a Context, once per process (Cloud Function instance), and run
events so that only a retryable failure has them delivered again.

Heavy SDKs (Firestore, Pub/Sub, Storage) are imported here, on the first event, not when a
function module is imported; the Vertex SDK is imported only when something deploys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from functools import cache
from typing import TYPE_CHECKING, Any

from modeldrop import logs
from modeldrop.domain.findings import excerpt
from modeldrop.errors import AccessError
from modeldrop.service.context import Context, describe
from modeldrop.service.ports import DeployError
from modeldrop.settings import Settings

if TYPE_CHECKING:
    from modeldrop.api.context import ApiContext

EVENT_FUNCTIONS = ("validate", "deploy", "reconcile")
log = logs.get("events")


@cache
def context() -> Context:
    """The process-wide Context built from the environment."""
    logs.configure()
    return build_context(Settings.from_env())


def build_context(settings: Settings) -> Context:
    import google.cloud.pubsub_v1 as pubsub_v1  # a module import: mypy resolves it as such
    from google.cloud import firestore

    from modeldrop.adapters.endpoint_client import DedicatedEndpointClient
    from modeldrop.adapters.firestore_store import FirestoreDeploymentStore
    from modeldrop.adapters.gcs_folder import GcsFolder, default_client
    from modeldrop.adapters.psc_network import PscNetwork
    from modeldrop.adapters.pubsub_events import CloudEventPublisher
    from modeldrop.adapters.pubsub_queue import PubSubWorkQueue
    from modeldrop.adapters.serving_logs import CloudServingLogs
    from modeldrop.adapters.vertex_deployer import VertexDeployer

    # one message per batch: a notification goes out at once instead of after 10 ms
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1)
    )
    storage_client = default_client()
    return Context(
        settings=settings,
        store=FirestoreDeploymentStore(
            firestore.Client(project=settings.project), settings.collection
        ),
        events=CloudEventPublisher(
            publisher, settings.project, settings.events_topic, timeout=settings.publish_timeout
        ),
        queue=PubSubWorkQueue(
            publisher, settings.project, settings.validated_topic, settings.publish_timeout
        ),
        deployer=VertexDeployer(settings),
        open_folder=lambda uri: GcsFolder(uri, storage_client),
        # both make their session (and import google.auth) on their first call
        endpoints=DedicatedEndpointClient(settings),
        serving_logs=CloudServingLogs(settings),
        private_network=PscNetwork(settings),
    )


@cache
def api_context() -> ApiContext:
    """The api function's process-wide context, built from the environment."""
    logs.configure()
    return build_api_context(Settings.from_env())


def build_api_context(settings: Settings) -> ApiContext:
    """The service context plus what the api adds: its caches."""
    from modeldrop.api.cache import DeployedCache, Throttle
    from modeldrop.api.context import REFRESH_SECONDS, ApiContext

    base = build_context(settings)
    return ApiContext(
        **{f.name: getattr(base, f.name) for f in fields(base)},
        deployed=DeployedCache(settings.record_cache_seconds),
        refresh=Throttle(REFRESH_SECONDS),
    )


def retryable(exc: BaseException) -> bool:
    """Whether an event whose handler raised `exc` may succeed when delivered again: storage,
    Firestore, Pub/Sub or Vertex AI was unreachable or busy. Records count their own attempts
    (service.records), so this raising again and again stays bounded."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, DeployError):
        return exc.retryable
    busy = (api.ServerError, api.TooManyRequests, api.Aborted, api.Cancelled, api.RetryError)
    unreachable = (auth.TransportError, requests.ConnectionError, requests.Timeout)
    return isinstance(exc, (AccessError, ConnectionError, TimeoutError, *busy, *unreachable))


def run_event(function: str, handler: Callable[[], Any], redeliver: bool = True) -> None:
    """Run one event's handler. A retryable failure is raised (a 500: the event is delivered
    again) when `redeliver`; any other is logged and the event acknowledged, since it would
    fail the same way every time."""
    try:
        handler()
    except Exception as exc:
        if redeliver and retryable(exc):
            log.warning("%s: %s; the event will be delivered again", function, describe(exc))
            raise
        log.error("%s: event acknowledged without effect: %s", function, describe(exc))


def answer_malformed_requests() -> None:
    """Under functions-framework, answer 400 instead of 500 to a request the framework cannot
    even turn into an event (a JSON list, JSON nested too deep): a 5xx is delivered again and
    again. Call it when an event function's module is loaded; the api function is left alone.
    """
    import flask

    if flask.has_app_context() and flask.current_app.name in EVENT_FUNCTIONS:
        flask.current_app.register_error_handler(Exception, _malformed)


def _malformed(exc: Exception) -> Any:
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc
    if retryable(exc):  # raised by run_event for redelivery
        return f"{type(exc).__name__}: retry later", 500
    log.warning("not an event: %s", describe(exc))
    return f"not an event ({type(exc).__name__}): {excerpt(str(exc))}", 400
