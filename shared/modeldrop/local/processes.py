"""Child processes in a process group of their own, output in a log file, stopped as a group.

The emulators and the model servers all run this way: output goes to a log file (never a pipe:
an undrained pipe blocks the server), and stopping TERMs the whole group, then KILLs what is
left after a grace period, so no child (gcloud's java, a model server's workers) is orphaned.

With `die_with_parent` (Linux), the process also gets PR_SET_PDEATHSIG, so it dies with this
process even when this one is killed with SIGKILL. Such processes are started from one
long-lived launcher thread, because that signal follows the thread that forked, not the process.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from queue import Queue
from typing import Any

# PR_SET_PDEATHSIG (1), then exec the command: it gets SIGTERM when the launcher thread dies.
_PDEATHSIG_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('modeldrop: the parent exited before the process started')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class _Launcher:
    """Starts processes from one long-lived daemon thread (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: Queue[tuple[dict[str, Any], Future[subprocess.Popen[bytes]]]] = Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="modeldrop-launcher", daemon=True
                )
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._queue.put((kwargs, future))
        return future.result()

    def _run(self) -> None:
        while True:
            kwargs, future = self._queue.get()
            try:
                future.set_result(subprocess.Popen(**kwargs))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)


_LAUNCHER = _Launcher()


def start_group(
    cmd: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `cmd` as the leader of a new process group; its output goes to `log_path` (the
    command line first) and `env` is added to this process's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = list(cmd)
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen
    if die_with_parent and sys.platform.startswith("linux"):
        args = [sys.executable, "-c", _PDEATHSIG_SHIM, str(os.getpid()), *args]
        popen = _LAUNCHER.popen
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        return popen(
            args=args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """TERM the group `proc` leads, KILL what is left after `grace` seconds, reap the leader.

    Does nothing when the leader was reaped before and its group is gone (stopped already)."""
    if proc.returncode is not None and not _group_alive(proc.pid):
        return
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    _signal_group(proc.pid, signal.SIGKILL)  # the leader's children, or a leader ignoring TERM
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)  # start_new_session: the group id is the leader's pid


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
