"""Is the architecture supported, and which listed base model do the weights derive from?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modeldrop.domain.findings import Finding, error, info, warning
from modeldrop.validation.model_config import ARCHITECTURE_FIELDS, ModelConfig

# Fine-tuning may resize the vocabulary (added tokens); it never changes the architecture.
RESIZABLE_FIELDS = frozenset({"vocab_size"})
COMPARED_FIELDS = tuple(f for f in ARCHITECTURE_FIELDS if f not in RESIZABLE_FIELDS)


class BasePolicy(StrEnum):
    STRICT = "strict"  # the weights must derive from a listed base model
    FAMILY = "family"  # any size of a supported family


@dataclass(frozen=True)
class ArchitectureResult:
    findings: list[Finding]
    matched_base: str | None
    supported: bool


def base_fields(base: dict[str, Any]) -> dict[str, int]:
    """The architecture fields a base-model catalog entry defines (text sub-config included)."""
    text = base.get("text_config") or {}
    return {
        key: value
        for key in ARCHITECTURE_FIELDS
        if isinstance(value := base[key] if base.get(key) is not None else text.get(key), int)
    }


def differences(config: dict[str, int], base: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Compared fields set in both that disagree: field -> (found, base)."""
    return {
        key: (config[key], base[key])
        for key in COMPARED_FIELDS
        if key in config and key in base and config[key] != base[key]
    }


def _distance(diff: dict[str, tuple[int, int]]) -> float:
    """How far apart two architectures are: summed log-ratios of the differing fields."""
    return sum(abs(math.log((found + 1) / (want + 1))) for found, want in diff.values())


def _supported_summary(bases: list[dict[str, Any]]) -> str:
    by_class: dict[str, list[str]] = {}
    for base in bases:
        by_class.setdefault(f"{base['architectures'][0]} ({base['model_type']})", []).append(
            base["model"]
        )
    return "; ".join(f"{cls}: {', '.join(models)}" for cls, models in by_class.items())


def check_architecture(
    config: ModelConfig, bases: list[dict[str, Any]], policy: BasePolicy
) -> ArchitectureResult:
    """Check the family, then match the architecture-defining fields against the base models."""
    family = [
        b
        for b in bases
        if b["model_type"] == config.model_type and config.architecture in b["architectures"]
    ]
    if not family:
        known_type = any(b["model_type"] == config.model_type for b in bases)
        what = (
            f"model_type {config.model_type!r} is supported but class {config.architecture} is not"
            if known_type
            else f"{config.architecture} (model_type {config.model_type!r}) is not a supported "
            "architecture"
        )
        return ArchitectureResult(
            [
                error(
                    "ARCHITECTURE_UNSUPPORTED",
                    f"config.json declares {what}. Supported: {_supported_summary(bases)}.",
                    "config.json",
                    "Vertex AI custom weights only deploy fine-tunes of these base models; for "
                    "other architectures use a custom serving container.",
                )
            ],
            None,
            False,
        )

    scored = sorted(
        ((differences(config.fields, base_fields(b)), i, b) for i, b in enumerate(family)),
        key=lambda item: (len(item[0]), _distance(item[0]), item[1]),
    )
    exact = [b for diff, _, b in scored if not diff]
    if exact:
        vocab = config.fields.get("vocab_size")
        best = next((b for b in exact if base_fields(b).get("vocab_size") == vocab), exact[0])
        findings = [
            info(
                "BASE_MODEL_MATCHED",
                f"The architecture matches {best['model']} ({best['hf_repo_id']}).",
                "config.json",
            )
        ]
        others = [b["model"] for b in exact if b is not best]
        if others:
            findings.append(
                info(
                    "BASE_MODEL_ALSO_MATCHES",
                    f"The same architecture is shared by {', '.join(others)}.",
                    "config.json",
                )
            )
        base_vocab = base_fields(best).get("vocab_size")
        if vocab is not None and base_vocab is not None and vocab != base_vocab:
            findings.append(
                info(
                    "VOCABULARY_RESIZED",
                    f"vocab_size is {vocab}; {best['model']} has {base_vocab} (resized by "
                    "fine-tuning, which is supported).",
                    "config.json",
                )
            )
        return ArchitectureResult(findings, best["model"], True)

    closest_diff, _, closest = scored[0]
    detail = ", ".join(f"{k} {found} (base {want})" for k, (found, want) in closest_diff.items())
    sizes = ", ".join(b["model"] for b in family)
    message = (
        f"{config.architecture} with these dimensions is not a listed base model; the closest, "
        f"{closest['model']}, differs in {detail}. Listed for this family: {sizes}."
    )
    if policy is BasePolicy.STRICT:
        finding = error(
            "BASE_MODEL_UNLISTED",
            message,
            "config.json",
            "Vertex AI only accepts fine-tunes of the listed base models; deploy weights derived "
            "from one of them, or validate with --policy family to allow any size of this family.",
        )
        return ArchitectureResult([finding], None, False)
    finding = warning(
        "BASE_MODEL_UNLISTED",
        message,
        "config.json",
        "Accepted by the family policy; Vertex AI may refuse sizes it does not list.",
    )
    return ArchitectureResult([finding], None, True)
