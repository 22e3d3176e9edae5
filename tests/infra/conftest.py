"""Fixtures for the infra tests: the parsed Terraform configuration and the built bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.hcl import Terraform

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "infra" / "terraform"


def pytest_configure(config: pytest.Config) -> None:
    # pyproject's marker list may not have it yet; --strict-markers needs it registered.
    config.addinivalue_line(
        "markers", "slow: builds a fresh virtualenv (cached under build/); runs in `make test`"
    )


@pytest.fixture(scope="session")
def terraform() -> Terraform:
    return Terraform.load(TERRAFORM_DIR)
