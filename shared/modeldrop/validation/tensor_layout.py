"""WEIGHTS_TENSOR_MISSING: the tensors an architecture needs, looked up in the safetensors headers.

The names come from the catalog (tensor_layouts.json), per model_type: the embedding, decoder
layers 0..num_hidden_layers-1 (any tensor under a layer's prefix counts), the final norm and,
unless the embeddings are tied, the output head. A family may have several namings (multimodal
checkpoints before and after transformers 4.52); the one the checkpoint matches best is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modeldrop.domain.findings import Finding, error, excerpt
from modeldrop.validation.model_config import TEXT_CONFIG_KEYS
from modeldrop.validation.safetensors_header import SafetensorsHeader, TensorInfo

SHOWN = 5
MAX_LAYER_DIGITS = 7


@dataclass
class LayoutCheck:
    findings: list[Finding] = field(default_factory=list)
    embedding: TensorInfo | None = None  # the input embedding, when the checkpoint has it


@dataclass
class _Match:
    naming: dict[str, str]
    layers_present: set[int]
    missing: list[str]
    missing_count: int
    embedding: TensorInfo | None


def tied_embeddings(config: Mapping[str, Any], default: bool) -> bool:
    """tie_word_embeddings of the text model: the text sub-config's, else the top level's."""
    for scope in (*(config.get(k) for k in TEXT_CONFIG_KEYS), config):
        if isinstance(scope, dict) and isinstance(scope.get("tie_word_embeddings"), bool):
            return bool(scope["tie_word_embeddings"])
    return default


def _layers_present(names: Iterable[str], pattern: str) -> set[int]:
    prefix, _, suffix = pattern.partition("{i}")
    present = set()
    for name in names:
        if name.startswith(prefix):
            end = name.find(suffix, len(prefix), len(prefix) + MAX_LAYER_DIGITS + len(suffix))
            number = name[len(prefix) : end] if end > 0 else ""
            if number.isascii() and number.isdigit():
                present.add(int(number))
    return present


def _match(
    naming: dict[str, str], tensors: Mapping[str, TensorInfo], layers: int, tied: bool
) -> _Match:
    required = [naming["embed"], naming["norm"], *([] if tied else [naming["head"]])]
    missing = [name for name in required if name not in tensors]
    present = _layers_present(tensors, naming["layer"])
    absent_layers = layers - sum(1 for i in present if i < layers)
    shown_layers: list[str] = []
    i = 0
    while len(shown_layers) < SHOWN and i < layers:  # at most len(present) + SHOWN steps
        if i not in present:
            shown_layers.append(naming["layer"].replace("{i}", str(i)) + "*")
        i += 1
    return _Match(
        naming,
        present,
        [*missing[:1], *shown_layers, *missing[1:]],
        len(missing) + absent_layers,
        tensors.get(naming["embed"]),
    )


def check_layout(
    model_type: str,
    config: Mapping[str, Any],
    layers: int,
    headers: Mapping[str, SafetensorsHeader],
    catalog: dict[str, Any],
) -> LayoutCheck:
    """Missing tensors of a model_type the catalog lists (others: nothing to check)."""
    layout = catalog["layouts"].get(model_type)
    if layout is None:
        return LayoutCheck()
    tensors: dict[str, TensorInfo] = {}
    for header in headers.values():
        tensors.update(header.tensors)
    tied = tied_embeddings(config, layout["tie_word_embeddings_default"])
    matches = [_match(catalog["namings"][n], tensors, layers, tied) for n in layout["namings"]]
    best = min(matches, key=lambda m: m.missing_count)  # the first of equals: catalog order
    result = LayoutCheck(embedding=best.embedding)
    if best.missing_count:
        shown = ", ".join(excerpt(name, 80) for name in best.missing[:SHOWN])
        more = f" ... ({best.missing_count} missing in all)" if best.missing_count > SHOWN else ""
        head = "" if tied else f" and, as tie_word_embeddings is false, {best.naming['head']}"
        result.findings.append(
            error(
                "WEIGHTS_TENSOR_MISSING",
                f"No safetensors shard holds {shown}{more}. A {model_type} checkpoint of "
                f"{layers} layers needs {best.naming['embed']}, tensors under "
                f"{best.naming['layer']} for each layer, {best.naming['norm']}{head}.",
                None,
                "Upload every shard written by save_pretrained(); if the model was saved "
                "partially (a failed or filtered save), save it again.",
            )
        )
    return result
