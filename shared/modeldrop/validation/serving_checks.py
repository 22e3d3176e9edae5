"""The pre-deploy serving-readiness checks (issue 12), from files the validator has read:
ADAPTER_ONLY, CHAT_TEMPLATE_MISSING / CHAT_TEMPLATE_INVALID, EOS_MISMATCH,
TOKENIZER_VOCAB_EXCEEDS_EMBEDDINGS, GENERATION_CONFIG_INVALID and WEIGHTS_TENSOR_MISSING.

Every file comes through the validator's bounded reads (`read`: bytes, or the finding a file
over its limit gives); each check lives in its own module, this one only feeds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modeldrop import catalog
from modeldrop.domain.findings import Finding
from modeldrop.domain.folder import FileInfo
from modeldrop.validation.adapter import SUPERSEDED, check_adapter
from modeldrop.validation.chat_template import collect_templates
from modeldrop.validation.eos import check_eos, stop_ids
from modeldrop.validation.generation_config import check_generation_config
from modeldrop.validation.inventory import Inventory
from modeldrop.validation.model_config import ModelConfig
from modeldrop.validation.safetensors_header import SafetensorsHeader
from modeldrop.validation.tensor_layout import check_layout
from modeldrop.validation.tokenizer_vocab import (
    check_vocab,
    load_json_object,
    tokenizer_facts,
    vocab_unchecked,
)

Read = Callable[[FileInfo, str], bytes | Finding]
STOP_SOURCES = "generation_config.json, config.json and tokenizer_config.json eos_token"


def with_adapter_check(
    findings: list[Finding], read: Read, inv: Inventory, config: ModelConfig | None
) -> list[Finding]:
    """The findings with ADAPTER_ONLY first (and what it explains dropped) for an adapter
    folder, or FILE_IGNORED notes for adapter files next to a full model."""
    files = [*([inv.adapter_config] if inv.adapter_config else []), *inv.adapter_weights]
    adapter_config = None
    if inv.adapter_config is not None:
        adapter_config = read(inv.adapter_config, "adapter_config_bytes")
    full_model = config is not None and bool(inv.safetensors or inv.pickles)
    found = check_adapter(files, adapter_config, full_model)
    if any(f.code == "ADAPTER_ONLY" for f in found):
        return [*found, *(f for f in findings if f.code not in SUPERSEDED)]
    return [*findings, *found]


def _generation_config(
    read: Read, inv: Inventory, findings: list[Finding]
) -> dict[str, Any] | None:
    if inv.generation_config is None:
        return None
    data = read(inv.generation_config, "generation_config_bytes")
    if isinstance(data, Finding):
        findings.append(data)
        return None
    fields = catalog.serving_rules()["generation_config_fields"]
    document, found = check_generation_config(data, inv.generation_config.name, fields)
    findings.extend(found)
    return document


def _tokenizer_json(
    read: Read, inv: Inventory, limit: int
) -> tuple[dict[str, Any] | None, Finding | None]:
    """tokenizer.json parsed, or why the vocabulary check cannot use it."""
    file = inv.tokenizer_json
    if file is None:
        return None, None
    if file.size > limit:
        why = f"is {file.size} bytes; modeldrop reads at most {limit // 2**20} MiB of it"
        return None, vocab_unchecked(file.name, why)
    data = read(file, "tokenizer_json_bytes")
    document = load_json_object(data) if isinstance(data, bytes) else None
    if document is None:
        return None, vocab_unchecked(file.name, "is not a JSON object")
    return document, None


def check_serving(
    read: Read,
    inv: Inventory,
    config: ModelConfig | None,
    headers: Mapping[str, SafetensorsHeader],
    tokenizer_config: dict[str, Any] | None,
) -> list[Finding]:
    """Every serving-readiness finding but ADAPTER_ONLY (see `with_adapter_check`)."""
    limits = catalog.file_rules()["limits"]
    rules = catalog.serving_rules()
    findings: list[Finding] = []
    generation = _generation_config(read, inv, findings)
    tokenizer_json, vocab_note = _tokenizer_json(read, inv, limits["tokenizer_json_bytes"])
    facts = tokenizer_facts(tokenizer_config, tokenizer_json)
    del tokenizer_json  # the facts keep the vocabulary mapping only

    files = [(f, read(f, "chat_template_bytes")) for f in inv.chat_templates]
    name = inv.tokenizer_config.name if inv.tokenizer_config else "tokenizer_config.json"
    templates = collect_templates(files, tokenizer_config, name, limits)
    findings.extend(templates.findings)
    stops = stop_ids(generation, config.raw if config else None, facts, rules["max_eos_ids"])
    known = list(rules["end_of_turn_tokens"])
    findings.extend(check_eos(templates.default, known, facts, stops, STOP_SOURCES))

    # Tensor names are known from safetensors headers only, and only when every one was read.
    if config is None or not headers or len(headers) != len(inv.safetensors):
        return findings
    layers = config.fields["num_hidden_layers"]
    layout = check_layout(config.model_type, config.raw, layers, headers, catalog.tensor_layouts())
    findings.extend(layout.findings)
    embedding = layout.embedding
    if embedding is not None and embedding.shape:
        if vocab_note is not None:
            findings.append(vocab_note)
        else:
            findings.extend(check_vocab(facts, embedding.shape[0], embedding.name))
    return findings
