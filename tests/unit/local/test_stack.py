"""The local stack finds the functions in the checkout, or says it needs one; nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldrop.errors import ModeldropError
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
