"""The local stack: every service modeldrop talks to, running on this machine.

Firestore and Pub/Sub emulators, fake-gcs-server publishing OBJECT_FINALIZE notifications, the
local Vertex AI emulator, the four functions under functions-framework, push subscriptions to
them, the GCS -> validate bridge and a reconcile tick. The functions run the production code;
only endpoints and credentials differ (and REQUESTS_CA_BUNDLE, the CA of the emulator's
dedicated endpoints, which they reach over https as on Google Cloud). They run from the
checkout's functions/ folder, so the stack runs from a checkout (an editable install).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modeldrop.bundle import project_root
from modeldrop.errors import ModeldropError, UsageError
from modeldrop.local.bridge import Bridge
from modeldrop.local.emulators import (
    DEFAULT_PROJECT,
    LOOPBACK,
    Emulator,
    LocalEmulators,
    free_port,
)
from modeldrop.local.vertex.capacity import load_capacity
from modeldrop.local.vertex.tls import CA_FILE

GCS_TOPIC = "modeldrop-gcs-notifications"
TICK_TOPIC = "modeldrop-tick"
# function target -> (signature type, the topic that triggers it)
FUNCTIONS = {
    "validate": ("cloudevent", None),
    "deploy": ("cloudevent", "validated_topic"),
    "reconcile": ("cloudevent", TICK_TOPIC),
    "api": ("http", None),
}


def functions_dir() -> Path:
    """The checkout's functions/ folder; NOT_A_CHECKOUT where modeldrop is installed without one."""
    folder = project_root() / "functions"
    if not (folder / "main.py").is_file():
        raise ModeldropError(
            "The local stack runs the functions from a modeldrop checkout, and this "
            f"installation has none ({folder / 'main.py'} does not exist).",
            "Clone the modeldrop repository, run `pip install -e '.[dev]'` in it, then "
            "`modeldrop up` (or `make up`) there.",
            code="NOT_A_CHECKOUT",
        )
    return folder


def function_env(environ: Mapping[str, str], stack: Mapping[str, str]) -> dict[str, str]:
    """The functions' environment: every MODELDROP_* variable of `environ`, then the stack's
    own values, which win (the functions always talk to the emulators)."""
    passed = {name: value for name, value in environ.items() if name.startswith("MODELDROP_")}
    return passed | dict(stack)


@dataclass
class StackConfig:
    project: str = DEFAULT_PROJECT
    bucket: str = "modeldrop-models"
    root_prefix: str = "models/"
    region: str = "us-central1"
    settle_seconds: float = 0.0
    completion_mode: str = "auto"
    base_policy: str = "family"  # the local demo's tiny models are not listed base sizes
    tick_seconds: float = 2.0
    engine: str = "auto"
    validated_topic: str = "modeldrop-validated"
    events_topic: str = "modeldrop-events"
    state_dir: Path = Path(".modeldrop")
    lease_seconds: float = 30.0
    extra_env: dict[str, str] = field(default_factory=dict)
    vertex_capacity: Path | None = None  # the Vertex emulator's GPU capacity table (JSON)

    def __post_init__(self) -> None:
        """A capacity file that is missing or bad is a usage error, before anything starts."""
        if self.vertex_capacity is None:
            return
        self.vertex_capacity = Path(self.vertex_capacity).resolve()
        try:
            load_capacity(self.vertex_capacity)
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"--vertex-capacity {self.vertex_capacity}: {exc}",
                'Give a JSON file shaped {"REGION": {"ACCELERATOR_TYPE": {"quota": N, '
                '"stock": N}}}, such as {"us-central1": {"NVIDIA_L4": {"quota": 0}}}.',
            ) from exc


class LocalStack:
    """Start with `start()` (or `with LocalStack(...)`), stop with `stop()`: no process is left."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.emulators = LocalEmulators(project=self.config.project, gcs_topic=GCS_TOPIC)
        self.processes: dict[str, Emulator] = {}
        self.bridge: Bridge | None = None
        self.urls: dict[str, str] = {}
        self.psc_port = free_port()  # the Vertex emulator's PSC endpoints listen there
        self.vertex_ca = self.config.state_dir.resolve() / CA_FILE  # written by the emulator
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- what the functions and clients are told ------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for the functions: this process's MODELDROP_* variables, overridden by
        the emulator hosts and every setting of the stack."""
        c = self.config
        return function_env(
            os.environ,
            {
                **self.emulators.env,
                "GOOGLE_CLOUD_PROJECT": c.project,
                "MODELDROP_BUCKET": c.bucket,
                "MODELDROP_ROOT_PREFIX": c.root_prefix,
                "MODELDROP_REGION": c.region,
                "MODELDROP_SETTLE_SECONDS": str(c.settle_seconds),
                "MODELDROP_COMPLETION_MODE": c.completion_mode,
                "MODELDROP_BASE_POLICY": c.base_policy,
                "MODELDROP_VALIDATED_TOPIC": c.validated_topic,
                "MODELDROP_EVENTS_TOPIC": c.events_topic,
                "MODELDROP_LEASE_SECONDS": str(c.lease_seconds),
                "MODELDROP_VERTEX_API_ENDPOINT": self.urls.get("vertex", ""),
                # the emulator answers Cloud Logging's entries:list with its engines' output
                "MODELDROP_LOGGING_API_ENDPOINT": self.urls.get("vertex", ""),
                # and Compute Engine's addresses and forwarding rules (PSC endpoints), whose
                # listeners take https on this port (443 on Google Cloud)
                "MODELDROP_COMPUTE_API_ENDPOINT": self.urls.get("vertex", ""),
                "MODELDROP_PSC_PORT": str(self.psc_port),
                "MODELDROP_VERTEX_ANONYMOUS": "true",
                # a replaced revision goes at once locally, unless the variable says otherwise
                "MODELDROP_RETIRE_AFTER_SECONDS": os.environ.get(
                    "MODELDROP_RETIRE_AFTER_SECONDS", "0"
                ),
                "REQUESTS_CA_BUNDLE": str(self.vertex_ca),
                "PYTHONUNBUFFERED": "1",
                **c.extra_env,
            },
        )

    def connection(self) -> dict[str, Any]:
        """What clients need (written to .modeldrop/stack.json)."""
        env = self.emulators.env
        return {
            "api_url": self.urls["api"],
            "bucket": self.config.bucket,
            "project": self.config.project,
            "storage_emulator_host": env["STORAGE_EMULATOR_HOST"],
            "pubsub_emulator_host": env["PUBSUB_EMULATOR_HOST"],
            "firestore_emulator_host": env["FIRESTORE_EMULATOR_HOST"],
            "events_topic": self.config.events_topic,
            "root_prefix": self.config.root_prefix,
            "vertex_url": self.urls["vertex"],
            "vertex_ca": str(self.vertex_ca),
            "vertex_psc_port": self.psc_port,
            "functions": {name: self.urls[name] for name in FUNCTIONS},
            "settings": {
                k: str(v) if isinstance(v, Path) else v
                for k, v in asdict(self.config).items()
                if k != "state_dir"
            },
        }

    # -- start and stop -------------------------------------------------------------------
    def start(self) -> LocalStack:
        functions = functions_dir()  # before anything starts
        try:
            self.emulators.start()
            os.environ.update(self.emulators.env)
            self._start_vertex()
            for name in FUNCTIONS:
                self._start_function(name, functions)
            for process in self.processes.values():
                process.wait_ready(120)
            self._provision()
            self._ticker = threading.Thread(target=self._tick, name="reconcile-tick", daemon=True)
            self._ticker.start()
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker:
            self._ticker.join(timeout=5)
        if self.bridge:
            self.bridge.stop()
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()
        self.emulators.stop()
        (self.config.state_dir / "stack.json").unlink(missing_ok=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- parts ----------------------------------------------------------------------------
    def _start_vertex(self) -> None:
        port = free_port()
        cache = self.config.state_dir / "vertex-cache"
        cmd = [
            sys.executable,
            "-m",
            "modeldrop.local.vertex",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--engine",
            self.config.engine,
            "--cache",
            str(cache),
            "--ca-dir",
            str(self.vertex_ca.parent),
            "--psc-port",
            str(self.psc_port),
        ]
        if self.config.vertex_capacity:
            cmd += ["--capacity", str(self.config.vertex_capacity)]
        process = Emulator(
            "vertex",
            cmd,
            port,
            {},
            ready_path="/emulator/state",
            process_env=self.emulators.env,
        )
        self.processes["vertex"] = process.start()
        self.urls["vertex"] = f"http://{LOOPBACK}:{port}"
        process.wait_ready(60)

    def _start_function(self, name: str, functions: Path) -> None:
        signature, _ = FUNCTIONS[name]
        port = free_port()
        cmd = [
            str(Path(sys.executable).parent / "functions-framework"),
            "--source",
            str(functions / f"{name}.py"),
            "--target",
            name,
            "--signature-type",
            signature,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ]
        ready = "/healthz" if signature == "http" else "/"
        url = f"http://{LOOPBACK}:{port}"
        own = {"MODELDROP_API_BASE_URL": url} if name == "api" else {}  # links in status bodies
        process = Emulator(
            f"function-{name}",
            cmd,
            port,
            {},
            ready_path=ready,
            process_env={**self.env, **own, "THREADS": "16"},
            ready_statuses=(200, 404, 405),
        )
        self.processes[name] = process.start()
        self.urls[name] = url

    def _provision(self) -> None:
        """Bucket, topics and subscriptions (push to the functions and to the bridge)."""
        import google.cloud.pubsub_v1 as pubsub_v1

        from modeldrop.adapters.gcs_folder import default_client
        from modeldrop.adapters.pubsub_admin import ensure_subscription, ensure_topic

        c = self.config
        storage = default_client()
        if storage.lookup_bucket(c.bucket) is None:
            storage.create_bucket(c.bucket)
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for topic in (c.validated_topic, c.events_topic, TICK_TOPIC, GCS_TOPIC):
            ensure_topic(publisher, c.project, topic)
        self.bridge = Bridge(self.urls["validate"]).start()
        pushes = {
            "validate-bridge": (GCS_TOPIC, self.bridge.url),
            "deploy": (c.validated_topic, self._push_url("deploy", c.validated_topic)),
            "reconcile": (TICK_TOPIC, self._push_url("reconcile", TICK_TOPIC)),
        }
        for name, (topic, endpoint) in pushes.items():
            ensure_subscription(
                subscriber,
                c.project,
                f"modeldrop-{name}",
                topic,
                push_endpoint=endpoint,
                ack_deadline_s=600,
            )
        self._publisher = publisher

    def _push_url(self, function: str, topic: str) -> str:
        # functions-framework turns a push envelope POSTed to /projects/P/topics/T into a
        # google.cloud.pubsub.topic.v1.messagePublished CloudEvent, as Eventarc delivers it.
        return f"{self.urls[function]}/projects/{self.config.project}/topics/{topic}"

    def _tick(self) -> None:
        topic = self._publisher.topic_path(self.config.project, TICK_TOPIC)
        while not self._stopping.wait(self.config.tick_seconds):
            try:
                self._publisher.publish(topic, b"{}").result(timeout=10)
            except Exception:  # the emulator may be restarting; the next tick tries again
                continue

    def _write_state(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        (self.config.state_dir / "stack.json").write_text(json.dumps(self.connection(), indent=2))
