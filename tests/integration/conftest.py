"""Session fixtures for the local emulators; they skip loudly where the emulators are missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modeldrop.local.emulators import (
    DEFAULT_PROJECT,
    Emulator,
    missing_emulators,
    start_fake_gcs,
    start_firestore,
    start_pubsub,
)


@dataclass
class RunningEmulator:
    """A started emulator and a client connected to it."""

    emulator: Emulator
    client: Any
    project: str = DEFAULT_PROJECT

    @property
    def host(self) -> str:
        return self.emulator.host

    @property
    def env(self) -> dict[str, str]:
        return {**self.emulator.env, "GOOGLE_CLOUD_PROJECT": self.project}


def _run(
    kind: str, start: Callable[[], Emulator], make_client: Callable[[], Any]
) -> Iterator[RunningEmulator]:
    """Start one emulator, export its variables for the session, stop it at the end."""
    reason = missing_emulators([kind])
    if reason:
        pytest.skip(f"EMULATORS MISSING: {reason}")
    emulator = start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**emulator.env, "GOOGLE_CLOUD_PROJECT": DEFAULT_PROJECT}.items():
                patch.setenv(name, value)
            yield RunningEmulator(emulator, make_client())
    finally:
        emulator.stop()


EMULATOR_FIXTURES = {"fake_gcs", "firestore_emulator", "pubsub_emulator"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses an emulator fixture with `emulators`."""
    for item in items:
        if EMULATOR_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulators)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[RunningEmulator]:
    """fake-gcs-server (in memory); STORAGE_EMULATOR_HOST is set; `client` is a storage.Client."""

    def client() -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=DEFAULT_PROJECT, credentials=AnonymousCredentials())

    yield from _run("gcs", lambda: start_fake_gcs(DEFAULT_PROJECT), client)


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[RunningEmulator]:
    """The Firestore emulator; FIRESTORE_EMULATOR_HOST is set; `client` is a firestore.Client."""

    def client() -> Any:
        from google.cloud import firestore

        return firestore.Client(project=DEFAULT_PROJECT)

    yield from _run("firestore", start_firestore, client)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[RunningEmulator]:
    """The Pub/Sub emulator; PUBSUB_EMULATOR_HOST is set; `client` is a pubsub PublisherClient."""

    def client() -> Any:
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient()

    yield from _run("pubsub", start_pubsub, client)


TEST_BUCKET = "vertex-emulator-it"


@pytest.fixture(scope="module")
def gcs(fake_gcs: RunningEmulator) -> RunningEmulator:
    """fake-gcs-server with the test bucket (TEST_BUCKET); `client` is its storage.Client."""
    import contextlib

    from google.api_core.exceptions import Conflict

    with contextlib.suppress(Conflict):
        fake_gcs.client.create_bucket(TEST_BUCKET)
    return fake_gcs
