"""Fixtures of the service tests: a harness of fakes, and a valid model folder to upload."""

from __future__ import annotations

import pytest

from tests.fixtures.model_folders import write_valid
from tests.unit.service.fakes import make_harness


@pytest.fixture
def h(tmp_path):
    return make_harness(tmp_path)


@pytest.fixture
def model(tmp_path):
    return write_valid(tmp_path / "source")
