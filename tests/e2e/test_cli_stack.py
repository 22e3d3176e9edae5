"""The `modeldrop` console script on the local stack (the capacity stack, echo engine), run as a
user runs it: the api found through the stack's .modeldrop/stack.json, then list, show, a
streamed chat, logs and delete of a model name, and the exit statuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.local_stack import wait_state

CHEAP = "placement: {max_hourly_usd: 0.9}\n"  # g2-standard-4 (1 x L4)
SCRIPT = Path(sys.executable).with_name("modeldrop")


def modeldrop(cwd: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """The console script (else `python -m modeldrop.cli`) with no api variables set: the api
    comes from cwd's .modeldrop/stack.json."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "modeldrop.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDROP_API")}
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_cli_on_the_local_stack(capacity_stack: Any, placing: Any, tmp_path: Path) -> None:
    (tmp_path / ".modeldrop").mkdir()
    shutil.copy(capacity_stack.config.state_dir / "stack.json", tmp_path / ".modeldrop")
    placing("cli-stack", CHEAP, {})  # no capacity limits: it lands in us-central1
    deployed = wait_state(capacity_stack, "cli-stack", timeout=120)
    assert deployed["state"] == "DEPLOYED", deployed["error"]
    deployment_id = deployed["id"]

    listed = modeldrop(tmp_path, "list", "--model", "cli-stack", "--state", "DEPLOYED")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.strip().splitlines()
    assert header.split()[:5] == ["ID", "MODEL", "REVISION", "STATE", "SERVING"]
    assert row.split()[:2] == [deployment_id, "cli-stack"]
    assert row.split()[3:6] == ["DEPLOYED", "*", "us-central1/g2-standard-4"]

    shown = modeldrop(tmp_path, "show", "cli-stack")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{deployment_id}  DEPLOYED")
    assert "smoke test  passed" in shown.stdout and "  history\n" in shown.stdout
    as_json = json.loads(modeldrop(tmp_path, "show", deployment_id, "--json").stdout)
    assert as_json["id"] == deployment_id and as_json["state"] == "DEPLOYED"

    chat = modeldrop(tmp_path, "chat", "cli-stack", "look at the sky", "--max-tokens", "4")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "look at the sky\n"  # the echo engine's answer, streamed word by word
    assert f"answered by deployment {deployment_id}" in chat.stderr

    logs = modeldrop(tmp_path, "logs", deployment_id)
    assert logs.returncode == 0 and "echo engine" in logs.stdout, logs.stderr

    deleted = modeldrop(tmp_path, "delete", "cli-stack", "--interval", "0.3", "--timeout", "60")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"{deployment_id}  UNDEPLOYED\n"
    assert f"deleting its serving revision {deployment_id}" in deleted.stderr
    assert "UNDEPLOYED" in deleted.stderr.splitlines()[-1]  # the progress, on stderr

    after = modeldrop(tmp_path, "show", deployment_id)
    assert after.returncode == 0 and after.stdout.startswith(f"{deployment_id}  UNDEPLOYED")
    refused = modeldrop(tmp_path, "chat", "cli-stack", "hi")
    assert refused.returncode == 1 and "409" in refused.stderr
    assert modeldrop(tmp_path, "show", "no-such-model").returncode == 4
    unreachable = modeldrop(tmp_path, "list", "--api", "http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "Cannot reach the api" in unreachable.stderr
