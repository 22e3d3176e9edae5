"""The process-group helper: the log gets the command line and the output; stop ends the group."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from modeldrop.local.processes import start_group, stop_group


def wait_for(check: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def running(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stop_ends_the_whole_group_and_twice_is_harmless(tmp_path: Path) -> None:
    log, marker = tmp_path / "logs" / "sleeper.log", tmp_path / "child"
    script = "echo started $X; sleep 30 & echo $! > child; wait"
    proc = start_group(["sh", "-c", script], log, {"X": "here"}, cwd=tmp_path)
    assert wait_for(lambda: marker.exists() and marker.read_text().strip())
    child = int(marker.read_text())
    assert os.getpgid(child) == proc.pid  # the child is in the group the process leads
    stop_group(proc, grace=5)
    assert proc.returncode is not None and wait_for(lambda: not running(child))
    stop_group(proc, grace=5)  # stopped already: nothing is signalled
    assert log.read_text().splitlines()[:2] == [f"$ sh -c '{script}'", "started here"]
