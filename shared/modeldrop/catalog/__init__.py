"""Catalogs as data: supported base models, quantization policy, machine specs, file rules,
tensor layouts and serving-readiness rules.

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


def serving_quota_metric(accelerator_type: str) -> str:
    """The per-region Vertex AI serving GPU quota metric of an accelerator (e.g. NVIDIA_L4 ->
    aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus): the catalog's
    accelerators[type].serving_quota_metric, else the quota console's pattern on the lowercased
    name (an inference for accelerators the catalog does not list)."""
    entry = machine_catalog()["accelerators"].get(accelerator_type, {})
    metric = entry.get("serving_quota_metric")
    if isinstance(metric, str):
        return metric
    return f"aiplatform.googleapis.com/custom_model_serving_{accelerator_type.lower()}_gpus"


def file_rules() -> dict[str, Any]:
    return load("files.json")


def overrides_schema() -> dict[str, Any]:
    return load("overrides.schema.json")


def pickle_globals() -> dict[str, list[str]]:
    """The globals (module -> names) a pickle weights file may import (pickle_scan's allowlist)."""
    return load("pickle_globals.json")["globals"]


def tensor_layouts() -> dict[str, Any]:
    """Per model_type, the tensor names a checkpoint must hold (WEIGHTS_TENSOR_MISSING)."""
    return load("tensor_layouts.json")


def serving_rules() -> dict[str, Any]:
    """End-of-turn tokens and generation_config.json field types (serving-readiness checks)."""
    return load("serving.json")
