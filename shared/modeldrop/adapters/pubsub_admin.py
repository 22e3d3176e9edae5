"""Idempotent creation of Pub/Sub topics and subscriptions (pull or push), for the local stack.

An existing topic or subscription is left as it is (ALREADY_EXISTS is success): its settings
are not compared or updated, and a subscription's filter cannot change after creation anyway.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core.exceptions import AlreadyExists


def ensure_topic(publisher: pubsub_v1.PublisherClient, project: str, topic: str) -> str:
    """Create the topic unless it exists; returns its path."""
    path = publisher.topic_path(project, topic)
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=path)
    return path


def ensure_subscription(
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    subscription: str,
    topic: str,
    *,
    push_endpoint: str | None = None,
    filter: str = "",
    ack_deadline_s: int = 60,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
    min_backoff_s: float | None = None,
    max_backoff_s: float | None = None,
) -> str:
    """Create a subscription unless it exists; returns its path.

    Pull unless `push_endpoint` is given (Pub/Sub POSTs the JSON envelope there). `filter` is a
    Pub/Sub filter on attributes. `dead_letter_topic` (a topic of the same project, which must
    exist) receives a message after `max_delivery_attempts` (5-100) failed deliveries (the
    emulator forwards it on the next pull or push attempt after the last one). The backoff
    bounds set a retry policy; an unset bound then takes Pub/Sub's default (10 s, 600 s).
    Without either, a nacked message is redelivered at once.
    """
    path = subscriber.subscription_path(project, subscription)
    request: dict[str, Any] = {
        "name": path,
        "topic": subscriber.topic_path(project, topic),
        "ack_deadline_seconds": ack_deadline_s,
        "filter": filter,
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    if dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": subscriber.topic_path(project, dead_letter_topic),
            "max_delivery_attempts": max_delivery_attempts,
        }
    if min_backoff_s is not None or max_backoff_s is not None:
        backoffs = {"minimum_backoff": min_backoff_s, "maximum_backoff": max_backoff_s}
        request["retry_policy"] = {
            key: timedelta(seconds=seconds)
            for key, seconds in backoffs.items()
            if seconds is not None
        }
    with contextlib.suppress(AlreadyExists):
        subscriber.create_subscription(request=request)
    return path
