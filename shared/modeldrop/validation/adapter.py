"""ADAPTER_ONLY: a PEFT adapter (adapter_config.json, adapter_model.*) uploaded without the model.

Vertex AI custom weights serve full checkpoints only: an adapter must be merged into its base
first. The finding names the base from adapter_config.json base_model_name_or_path. Next to a
full model, adapter files are only noted (serving does not load them).
"""

from __future__ import annotations

from modeldrop.domain.findings import Finding, error, excerpt, info
from modeldrop.domain.folder import FileInfo
from modeldrop.validation.tokenizer_vocab import load_json_object

SUPERSEDED = frozenset({"CONFIG_MISSING", "WEIGHTS_MISSING"})
"""What ADAPTER_ONLY explains: an adapter folder has neither, and merging writes both."""
BASE_KEY = "base_model_name_or_path"


def _base_model(adapter_config: bytes | Finding | None) -> str | None:
    if not isinstance(adapter_config, bytes):
        return None
    document = load_json_object(adapter_config)
    base = document.get(BASE_KEY) if document else None
    return base if isinstance(base, str) and base.strip() else None


def check_adapter(
    adapter_files: list[FileInfo],
    adapter_config: bytes | Finding | None,
    full_model: bool,
) -> list[Finding]:
    """ADAPTER_ONLY when adapter files come without a full model (weights and a config.json
    with an architecture); FILE_IGNORED for each adapter file next to one."""
    if not adapter_files:
        return []
    if full_model:
        return [
            info("FILE_IGNORED", f"{f.name} is a PEFT adapter file; it is not loaded.", f.name)
            for f in adapter_files
        ]
    base = _base_model(adapter_config)
    named = f"the base model {excerpt(base, 120)}" if base else "its base model"
    names = ", ".join(f.name for f in adapter_files[:3])
    return [
        error(
            "ADAPTER_ONLY",
            f"The folder holds a PEFT adapter ({names}) but not a full model (weights and a "
            "config.json naming an architecture); Vertex AI custom weights serve full "
            "checkpoints only.",
            adapter_files[0].name,
            f"Merge the adapter into {named} and upload the merged folder: "
            "PeftModel.from_pretrained(base, adapter_folder).merge_and_unload(), then "
            "save_pretrained(folder, safe_serialization=True) with the tokenizer.",
        )
    ]
