"""Quantization policy: reject quantized weights, except a family's own release format.

The policy (methods, tensor markers, native formats, packing) is data in
catalog/quantization.json; this module only applies it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modeldrop.domain.findings import Finding, error, excerpt, info
from modeldrop.validation.model_config import ModelConfig
from modeldrop.validation.safetensors_header import TensorInfo

QUANT_HINT = (
    "Vertex AI custom weights do not accept quantized models; upload the unquantized "
    "(BF16/FP16) weights, e.g. merge the adapter into the full-precision base and save with "
    "save_pretrained(safe_serialization=True)."
)


@dataclass(frozen=True)
class QuantizationDecision:
    findings: list[Finding]
    native_format: dict[str, Any] | None


def _method(config: ModelConfig) -> str:
    quant = config.quantization or {}
    method = quant.get("quant_method") or quant.get("format") or "unknown"
    if method == "bitsandbytes" or quant.get("load_in_4bit") or quant.get("load_in_8bit"):
        bits = (
            "4-bit" if quant.get("load_in_4bit") else "8-bit" if quant.get("load_in_8bit") else ""
        )
        return f"bitsandbytes {bits}".strip()
    return method if isinstance(method, str) and len(method) <= 64 else excerpt(method)


def native_format_for(config: ModelConfig, policy: dict[str, Any]) -> dict[str, Any] | None:
    """The family's own release format that this config declares, if any."""
    quant = config.quantization or {}
    method = str(quant.get("quant_method", "")).lower()
    for native in policy["native_formats"]:
        if (
            config.model_type in native["model_types"]
            and method == native["quant_method"]
            and all(quant.get(k) == v for k, v in native["config_must_match"].items())
        ):
            return native
    return None


def check_config(config: ModelConfig, policy: dict[str, Any]) -> QuantizationDecision:
    """Decide from config.json alone whether the weights declare a quantization."""
    if config.quantization is None:
        return QuantizationDecision([], None)
    native = native_format_for(config, policy)
    if native:
        return QuantizationDecision(
            [
                info(
                    "QUANTIZATION_NATIVE",
                    f"config.json declares {native['name']}: {native['note']} Accepted as the "
                    "family's own release format.",
                    "config.json",
                )
            ],
            native,
        )
    method = _method(config)
    label = policy["methods"].get((method.split() or [""])[0].lower(), method)
    detail = f"{label} ({method})" if label.lower() != method.lower() else label
    formats = ", ".join(
        f"{n['name']} for {'/'.join(n['model_types'])}" for n in policy["native_formats"]
    )
    return QuantizationDecision(
        [
            error(
                "QUANTIZED_CONFIG",
                f"config.json {config.quantization_key} declares {detail} quantization; quantized "
                f"models are not supported (the only exceptions are native release formats: "
                f"{formats}).",
                "config.json",
                QUANT_HINT,
            )
        ],
        None,
    )


def _marker(name: str, markers: dict[str, str]) -> str | None:
    if not name.endswith(tuple(markers)):  # one C-level test for the common, unmarked tensor
        return None
    return next((label for suffix, label in markers.items() if name.endswith(suffix)), None)


def check_tensors(
    file: str,
    tensors: Iterable[TensorInfo],
    policy: dict[str, Any],
    native: dict[str, Any] | None,
) -> list[Finding]:
    """Quantized tensors in one shard (packed weights, scales, integer or FP8 weights)."""
    allowed_dtypes = set(native["tensor_dtypes"]) if native else set()
    allowed_suffixes = tuple(native["tensor_suffixes"]) if native else ()
    quantized_dtypes = set(policy["quantized_dtypes"])
    found: list[str] = []
    kinds: set[str] = set()
    for tensor in tensors:
        if allowed_suffixes and tensor.name.endswith(allowed_suffixes):
            continue
        marker = _marker(tensor.name, policy["tensor_markers"])
        if marker:
            found.append(tensor.name)
            kinds.add(marker)
        elif tensor.dtype in quantized_dtypes and tensor.dtype not in allowed_dtypes:
            found.append(tensor.name)
            kinds.add(f"{tensor.dtype} weights")
    if not found:
        return []
    examples = ", ".join(excerpt(n) for n in found[:3])
    examples += f" and {len(found) - 3} more" if len(found) > 3 else ""
    return [
        error(
            "QUANTIZED_TENSORS",
            f"{len(found)} tensors are quantized ({', '.join(sorted(kinds))}): {examples}.",
            file,
            QUANT_HINT,
        )
    ]


def parameters(
    tensors: Iterable[TensorInfo], config: ModelConfig | None, policy: dict[str, Any]
) -> int:
    """Parameter count: packed layouts unpacked, scales and zero points not counted."""
    quant = (config.quantization if config else None) or {}
    skip = tuple(policy["non_parameter_suffixes"])
    rules = [
        rule
        for rule in policy["parameter_packing"]
        if all(quant.get(k) == v for k, v in rule.get("when_config", {}).items())
    ]
    total = 0
    for tensor in tensors:
        if tensor.name.endswith(skip):
            continue
        rule = next(
            (r for r in rules if tensor.name.endswith(r["suffix"]) and tensor.dtype == r["dtype"]),
            None,
        )
        total += tensor.elements * (_values_per_element(rule, quant) if rule else 1)
    return total


def _values_per_element(rule: dict[str, Any], quant: dict[str, Any]) -> int:
    if "values_per_element" in rule:
        return rule["values_per_element"]
    bits = quant.get(rule["config_bits_key"])
    if not isinstance(bits, int) or isinstance(bits, bool) or bits <= 0:
        bits = rule["default_bits"]
    return max(1, rule["element_bits"] // bits)
