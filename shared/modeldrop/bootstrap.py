"""Wire the real adapters into a Context, once per process (Cloud Function instance).

Heavy SDKs (Firestore, Pub/Sub, Storage) are imported here, on the first event, not when a
function module is imported; the Vertex SDK is imported only when something deploys.
"""

from __future__ import annotations

from functools import cache

from modeldrop import logs
from modeldrop.service.context import Context
from modeldrop.settings import Settings


@cache
def context() -> Context:
    """The process-wide Context built from the environment."""
    logs.configure()
    return build_context(Settings.from_env())


def build_context(settings: Settings) -> Context:
    from google.cloud import firestore, pubsub_v1

    from modeldrop.adapters.endpoint_client import DedicatedEndpointClient
    from modeldrop.adapters.firestore_store import FirestoreDeploymentStore
    from modeldrop.adapters.gcs_folder import GcsFolder, default_client
    from modeldrop.adapters.pubsub_events import CloudEventPublisher
    from modeldrop.adapters.pubsub_queue import PubSubWorkQueue
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
        endpoints=DedicatedEndpointClient(settings),
    )
