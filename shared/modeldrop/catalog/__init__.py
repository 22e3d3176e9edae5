"""Catalogs as data: supported base models, quantization policy, machine specs, file rules.

Each JSON file in this folder carries its sources; this module only loads them (once).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> Any:
    """The parsed JSON catalog file `name` (e.g. "base_models.json")."""
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def base_models() -> list[dict[str, Any]]:
    return load("base_models.json")["models"]


def dtype_bits() -> dict[str, int]:
    return load("dtypes.json")["bits"]


def quantization_policy() -> dict[str, Any]:
    return load("quantization.json")


def machine_catalog() -> dict[str, Any]:
    return load("machine_specs.json")


def file_rules() -> dict[str, Any]:
    return load("files.json")


def overrides_schema() -> dict[str, Any]:
    return load("overrides.schema.json")


def pickle_globals() -> dict[str, list[str]]:
    """The globals (module -> names) a pickle weights file may import (pickle_scan's allowlist)."""
    return load("pickle_globals.json")["globals"]
