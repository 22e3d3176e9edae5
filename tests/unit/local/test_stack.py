"""The local stack finds the functions in the checkout, or says it needs one; nothing starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeldrop.cli import EXIT_USAGE, main
from modeldrop.errors import ModeldropError, UsageError
from modeldrop.local import stack
from modeldrop.local.stack import LocalStack, StackConfig, functions_dir

ROOT = Path(__file__).resolve().parents[3]


def test_a_checkout_has_the_functions() -> None:
    assert functions_dir() == ROOT / "functions"


def test_an_installed_package_without_a_checkout_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # installed from a wheel, the package sits in site-packages: no functions/ beside it
    monkeypatch.setattr(stack, "project_root", lambda: tmp_path / "lib" / "python3.11")
    local = LocalStack(StackConfig(state_dir=tmp_path / "state"))
    monkeypatch.setattr(local.emulators, "start", lambda: pytest.fail("an emulator started"))
    with pytest.raises(ModeldropError) as caught:
        local.start()
    assert caught.value.code == "NOT_A_CHECKOUT"
    assert "runs the functions from a modeldrop checkout" in caught.value.message
    assert "pip install -e" in caught.value.hint


def test_the_functions_get_every_modeldrop_variable_and_the_stack_wins() -> None:
    environ = {
        "MODELDROP_REGIONS": "europe-west4,us-central1",
        "MODELDROP_VERTEX_FAULTS": "deploy:503",
        "MODELDROP_VERTEX_API_ENDPOINT": "https://europe-west4-aiplatform.googleapis.com",
        "MODELDROP_VERTEX_ANONYMOUS": "false",
        "HTTPS_PROXY": "http://proxy:3128",
        "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/key.json",
        "modeldrop_lower": "x",
    }
    stack_values = {
        "MODELDROP_VERTEX_API_ENDPOINT": "http://127.0.0.1:8090",
        "MODELDROP_VERTEX_ANONYMOUS": "true",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443",
    }
    assert stack.function_env(environ, stack_values) == {
        "MODELDROP_REGIONS": "europe-west4,us-central1",
        "MODELDROP_VERTEX_FAULTS": "deploy:503",
        "MODELDROP_VERTEX_API_ENDPOINT": "http://127.0.0.1:8090",
        "MODELDROP_VERTEX_ANONYMOUS": "true",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443",
    }


def test_the_stack_env_keeps_the_emulator_endpoint_and_its_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "MODELDROP_VERTEX_API_ENDPOINT", "https://us-central1-aiplatform.googleapis.com"
    )
    monkeypatch.setenv("MODELDROP_LOGGING_API_ENDPOINT", "https://logging.googleapis.com")
    monkeypatch.setenv("MODELDROP_BASE_POLICY", "strict")
    monkeypatch.setenv("MODELDROP_REGIONS", "europe-west4,us-central1")
    monkeypatch.setenv("UNRELATED", "1")
    local = LocalStack(StackConfig(state_dir=tmp_path, base_policy="family"))
    local.urls["vertex"] = "http://127.0.0.1:8090"
    env = local.env
    assert env["MODELDROP_VERTEX_API_ENDPOINT"] == "http://127.0.0.1:8090"
    assert env["MODELDROP_LOGGING_API_ENDPOINT"] == "http://127.0.0.1:8090"  # entries:list too
    assert env["MODELDROP_VERTEX_ANONYMOUS"] == "true"
    assert env["MODELDROP_BASE_POLICY"] == "family"
    assert env["MODELDROP_REGIONS"] == "europe-west4,us-central1"
    assert "UNRELATED" not in env


def test_a_capacity_file_is_checked_when_the_stack_is_configured(tmp_path: Path) -> None:
    good = tmp_path / "capacity.json"
    good.write_text(json.dumps({"us-central1": {"NVIDIA_L4": {"quota": 0}}}))
    assert StackConfig(vertex_capacity=good).vertex_capacity == good.resolve()
    (tmp_path / "bad.json").write_text(json.dumps({"us-central1": {"NVIDIA_L5": {}}}))
    for path, needle in [
        (tmp_path / "missing.json", "No such file"),
        (tmp_path / "bad.json", "unknown accelerator type"),
    ]:
        with pytest.raises(UsageError, match=needle) as caught:
            StackConfig(vertex_capacity=path)
        assert "ACCELERATOR_TYPE" in caught.value.hint


def test_the_vertex_emulator_is_started_with_the_capacity_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "capacity.json"
    table.write_text("{}")
    commands: list[list[str]] = []

    class Started:
        def __init__(self, name: str, cmd: list[str], *args: object, **kwargs: object) -> None:
            commands.append(cmd)

        def start(self) -> Started:
            return self

        def wait_ready(self, timeout: float) -> Started:
            return self

    monkeypatch.setattr(stack, "Emulator", Started)
    local = LocalStack(StackConfig(state_dir=tmp_path, vertex_capacity=table))
    local._start_vertex()
    cmd = commands[0]
    assert cmd[cmd.index("--capacity") + 1] == str(table.resolve())


def test_up_and_demo_refuse_a_bad_capacity_file_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack.LocalStack, "start", lambda self: pytest.fail("the stack started"))
    for command in ("up", "demo"):
        assert main([command, "--vertex-capacity", str(tmp_path / "missing.json")]) == EXIT_USAGE
        assert "--vertex-capacity" in capsys.readouterr().err
