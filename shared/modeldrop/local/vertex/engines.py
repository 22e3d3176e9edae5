"""Model servers behind the emulator's endpoints: `transformers serve` (CPU), vLLM (GPU), echo.

Each process engine runs in its own process group with its output in a log file, is stopped as
a group (TERM, then KILL after a grace period) and, on Linux, dies with the emulator even when
the emulator is killed with SIGKILL (`modeldrop.local.processes`, die_with_parent).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modeldrop.local.emulators import LOOPBACK, free_port
from modeldrop.local.processes import start_group, stop_group

if TYPE_CHECKING:
    import requests

KINDS = ("auto", "transformers", "vllm", "echo")
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 3000
ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # serve the local copy; never reach the Hub
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
VLLM_ARGS_ENV = "MODELDROP_VLLM_ARGS"
VLLM_DEFAULT_ARGS = "--gpu-memory-utilization 0.45"  # leaves room for a second engine
SERVING_HINT = "pip install -e '.[local-serving]' (torch CPU build and transformers[serving])"


class EngineError(RuntimeError):
    """An engine could not start or load the model; the message carries its log's last lines."""


class EngineUnavailable(EngineError):
    """The chosen engine cannot run on this machine (package or GPU missing)."""


class Engine(Protocol):
    kind: str
    url: str  # http://127.0.0.1:PORT
    served_model: str  # what the engine expects in a request's "model"
    folder: Path
    log_path: Path  # its whole output (the emulator's serving log reads it)

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout: float) -> None: ...

    def stop(self) -> None: ...

    def info(self) -> dict[str, Any]: ...


def gpu_present() -> bool:
    """True when an NVIDIA GPU is visible (device node or nvidia-smi), without importing torch."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def resolve_kind(kind: str) -> str:
    """The engine `kind` stands for: auto picks vLLM with a GPU and vllm installed, else
    transformers. Raises EngineError when the chosen engine cannot run here."""
    if kind not in KINDS:
        raise EngineUnavailable(f"unknown engine {kind!r}; choose from {', '.join(KINDS)}")
    has_vllm = importlib.util.find_spec("vllm") is not None
    if kind == "auto":
        kind = "vllm" if has_vllm and gpu_present() else "transformers"
    if kind == "vllm" and not (has_vllm and gpu_present()):
        raise EngineUnavailable("engine vllm needs the vllm package and an NVIDIA GPU here")
    if kind == "transformers" and not all(
        importlib.util.find_spec(name) for name in ("torch", "transformers", "fastapi", "uvicorn")
    ):
        raise EngineError(
            f"engine transformers needs torch and transformers[serving]; {SERVING_HINT}"
        )
    return kind


def create_engine(kind: str, folder: Path, model_id: str, log_dir: Path) -> Engine:
    """A not-yet-started engine of `kind` ("auto" resolved) serving `folder` as `model_id`."""
    kind = resolve_kind(kind)
    if kind == "echo":
        from modeldrop.local.vertex.echo import EchoEngine

        return EchoEngine(folder, model_id, log_dir)
    port = free_port()
    log_path = log_dir / f"{kind}-{model_id}-{port}.log"
    if kind == "vllm":
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)]
        cmd += ["--served-model-name", model_id, "--host", LOOPBACK, "--port", str(port)]
        cmd += shlex.split(os.environ.get(VLLM_ARGS_ENV, VLLM_DEFAULT_ARGS))
        return ProcessEngine("vllm", cmd, port, model_id, folder, log_path)
    # transformers serve names the model after the path it was given: run it beside a link
    # called model_id, so it answers as model_id (like vLLM's --served-model-name).
    run_dir = log_dir.parent / "run" / f"{model_id}-{port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / model_id).symlink_to(folder.resolve(), target_is_directory=True)
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", model_id]
    cmd += ["--host", LOOPBACK, "--port", str(port), "--device", "cpu"]
    return ProcessEngine("transformers", cmd, port, model_id, folder, log_path, cwd=run_dir)


class ProcessEngine:
    """An OpenAI-compatible server process: own process group, log file, TERM then KILL."""

    def __init__(
        self,
        kind: str,
        cmd: list[str],
        port: int,
        served_model: str,
        folder: Path,
        log_path: Path,
        ready_path: str = "/health",
        cwd: Path | None = None,
    ) -> None:
        self.kind = kind
        self.cmd = cmd
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self.served_model = served_model
        self.folder = folder
        self.log_path = log_path
        self.ready_path = ready_path
        self.cwd = cwd  # a run folder of links, removed on stop
        self.startup_s: float | None = None
        self._started_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        with self._lock:
            if self._stopped:
                raise EngineError(f"{self.kind} engine was stopped before it started")
            if self._proc is not None:
                return
            self._proc = start_group(
                self.cmd, self.log_path, ENGINE_ENV, self.cwd, die_with_parent=True
            )
            self._started_at = time.monotonic()

    def wait_ready(self, timeout: float) -> None:
        """Poll the health route, then generate one token; EngineError with the log on failure."""
        import requests  # only the emulator needs it, not `modeldrop --help`

        if self._proc is None:
            raise EngineError(f"{self.kind} engine not started")
        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise EngineError(
                        f"Model server ({self.kind}) exited with code {code} before it was "
                        f"ready. {self.log_tail()}"
                    )
                if self._stopped:
                    raise EngineError(f"{self.kind} engine was stopped while starting")
                with contextlib.suppress(requests.RequestException):
                    if session.get(self.url + self.ready_path, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"Model server ({self.kind}) not ready after {timeout:.0f} s. "
                        f"{self.log_tail()}"
                    )
                time.sleep(0.1)
            self._warm_up(session)
        self.startup_s = time.monotonic() - self._started_at

    def _warm_up(self, session: requests.Session) -> None:
        import requests

        body = {"model": self.served_model, "prompt": "hello", "max_tokens": 1, "temperature": 0}
        try:
            response = session.post(self.url + "/v1/completions", json=body, timeout=120)
        except requests.RequestException as exc:
            raise EngineError(
                f"Model server ({self.kind}) failed its first request: {exc}. {self.log_tail()}"
            ) from exc
        if response.status_code != 200:
            raise EngineError(
                f"Model server ({self.kind}) answered {response.status_code} to its first "
                f"request: {response.text[:500]}. {self.log_tail()}"
            )

    def stop(self) -> None:
        """TERM the process group, KILL what is left after STOP_GRACE_S; idempotent."""
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is not None:
            stop_group(proc, STOP_GRACE_S)
        if self.cwd is not None:
            shutil.rmtree(self.cwd, ignore_errors=True)  # unlinks the links, not their targets

    def log_tail(self) -> str:
        """The log's last lines, the final exception line first (what to read in an error)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        lines = [line for line in lines if line.strip()]
        tail = "\n".join(lines[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]
        last = lines[-1] if lines else ""
        return f"Last error: {last}\nLast lines of {self.log_path}:\n{tail}"

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pid": self.pid,
            "url": self.url,
            "served_model": self.served_model,
            "log": str(self.log_path),
            "running": self._proc is not None and self._proc.poll() is None,
            "startup_seconds": self.startup_s,
        }
