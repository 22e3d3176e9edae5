"""Sort a folder listing into the files a Hugging Face model folder is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modeldrop.domain.findings import Finding, error, info, warning
from modeldrop.domain.folder import FileInfo


@dataclass
class Inventory:
    config: FileInfo | None = None
    tokenizer_config: FileInfo | None = None
    overrides: FileInfo | None = None
    tokenizer_json: FileInfo | None = None
    generation_config: FileInfo | None = None
    adapter_config: FileInfo | None = None
    adapter_weights: list[FileInfo] = field(default_factory=list)
    chat_templates: list[FileInfo] = field(default_factory=list)
    safetensors: list[FileInfo] = field(default_factory=list)
    pickles: list[FileInfo] = field(default_factory=list)
    indexes: list[FileInfo] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _nested_template(name: str, rules: dict[str, Any]) -> bool:
    """A template of additional_chat_templates/ (one level down, *.jinja)."""
    folder = rules["chat_template_folder"]
    rest = name[len(folder) :]
    return (
        name.startswith(folder) and "/" not in rest and rest.endswith(rules["chat_template_suffix"])
    )


def take_inventory(files: list[FileInfo], rules: dict[str, Any]) -> Inventory:
    """Classify root-level files and report what is missing or not accepted."""
    inv = Inventory()
    root = [f for f in files if "/" not in f.name]
    inv.chat_templates = [f for f in files if _nested_template(f.name, rules)]
    nested = [f for f in files if "/" in f.name and not _nested_template(f.name, rules)]
    limits = rules["limits"]
    if len(files) > limits["listed_files"] or len(root) > limits["root_files"]:
        where, count, limit = (
            ("at its top level", len(root), limits["root_files"])
            if len(files) <= limits["listed_files"]
            else ("in all (listing stopped there)", len(files), limits["listed_files"])
        )
        inv.findings.append(
            error(
                "FOLDER_TOO_MANY_FILES",
                f"The folder has {count} files {where}; a model folder has at most {limit} "
                "(config, tokenizer, index and weight shards).",
                None,
                "Upload only the files save_pretrained() writes; keep other files elsewhere.",
            )
        )
        return inv
    names = {f.name for f in root}
    rejected: list[tuple[FileInfo, str]] = []
    for f in root:
        kind = rules["weights"].get(_suffix(f.name))
        if f.name == rules["config"]:
            inv.config = f
        elif f.name == rules["tokenizer_config"]:
            inv.tokenizer_config = f
        elif f.name == rules["overrides"]:
            inv.overrides = f
        elif f.name == rules["tokenizer_json"]:
            inv.tokenizer_json = f
        elif f.name == rules["generation_config"]:
            inv.generation_config = f
        elif f.name == rules["adapter_config"]:
            inv.adapter_config = f
        elif f.name in rules["adapter_weights"]:  # a PEFT adapter, not the model's weights
            inv.adapter_weights.append(f)
        elif f.name in rules["chat_template_files"]:
            inv.chat_templates.append(f)
        elif f.name.endswith(rules["index_suffix"]):
            inv.indexes.append(f)
        elif f.name in rules["ignored_root_files"]:
            inv.findings.append(
                info("FILE_IGNORED", f"{f.name} is a training artifact; it is not loaded.", f.name)
            )
        elif kind == "safetensors":
            inv.safetensors.append(f)
        elif kind == "pickle":
            inv.pickles.append(f)
        elif _suffix(f.name) in rules["rejected_weights"]:
            rejected.append((f, rules["rejected_weights"][_suffix(f.name)]))

    if inv.config is None:
        inv.findings.append(
            error(
                "CONFIG_MISSING",
                "The folder has no config.json at its top level.",
                rules["config"],
                "Upload the config.json that save_pretrained() writes next to the weights.",
            )
        )
    has_weights = bool(inv.safetensors or inv.pickles)
    for f, label in rejected:
        message = f"{f.name} is {label}; Vertex AI custom weights accept *.safetensors and *.bin."
        if has_weights:
            inv.findings.append(
                warning(
                    "WEIGHTS_FORMAT_IGNORED",
                    message + " It will not be loaded.",
                    f.name,
                    "Remove it from the folder to save upload time and storage.",
                )
            )
        else:
            inv.findings.append(
                error(
                    "WEIGHTS_FORMAT_UNSUPPORTED",
                    message,
                    f.name,
                    "Convert the weights to safetensors with transformers: load the model and "
                    "call save_pretrained(safe_serialization=True).",
                )
            )
    if not has_weights and not rejected:
        inv.findings.append(
            error(
                "WEIGHTS_MISSING",
                "The folder has no weights (*.safetensors or *.bin) at its top level.",
                None,
                "Upload the weight files written by save_pretrained().",
            )
        )
    if not any(n in names for n in rules["tokenizer_any_of"]):
        inv.findings.append(
            error(
                "TOKENIZER_MISSING",
                f"The folder has no tokenizer ({' or '.join(rules['tokenizer_any_of'])}).",
                None,
                "Save the tokenizer with the model: tokenizer.save_pretrained(folder).",
            )
        )
    if inv.tokenizer_config is None:
        inv.findings.append(
            error(
                "TOKENIZER_CONFIG_MISSING",
                f"The folder has no {rules['tokenizer_config']}.",
                rules["tokenizer_config"],
                "Save the tokenizer with the model: tokenizer.save_pretrained(folder).",
            )
        )
    for group, weight_suffix in ((inv.safetensors, ".safetensors"), (inv.pickles, ".bin")):
        index_name = f"*{weight_suffix}{rules['index_suffix']}"
        indexed = any(i.name.endswith(index_name[1:]) for i in inv.indexes)
        if len(group) > 1 and not indexed:
            inv.findings.append(
                error(
                    "INDEX_MISSING",
                    f"The folder has {len(group)} *{weight_suffix} shards but no {index_name} "
                    "naming which tensor lives in which shard.",
                    None,
                    "Upload the index file written by save_pretrained(), or wait for the "
                    "upload to finish.",
                )
            )
    if inv.safetensors and inv.pickles:
        inv.findings.append(
            info(
                "PICKLE_WEIGHTS_UNUSED",
                "Both *.safetensors and *.bin weights are present; serving loads the "
                "safetensors files.",
            )
        )
    _bound(inv, limits)
    _bound_templates(inv, rules)
    if nested:
        inv.findings.append(
            info(
                "NESTED_FILES_IGNORED",
                f"{len(nested)} files in subfolders (e.g. {nested[0].name}) are not part of the "
                "model and are ignored.",
            )
        )
    return inv


# Inventory group -> the limit on its length, and what is counted (for the message).
_GROUP_LIMITS = (
    ("safetensors", "safetensors_files", "*.safetensors shards"),
    ("pickles", "pickle_files", "*.bin weight files"),
    ("indexes", "index_files", "*.index.json files"),
)


def _bound(inv: Inventory, limits: dict[str, Any]) -> None:
    """Over-long groups are refused whole (and not read): one finding each."""
    for attribute, limit_key, what in _GROUP_LIMITS:
        group: list[FileInfo] = getattr(inv, attribute)
        limit = limits[limit_key]
        if len(group) > limit:
            inv.findings.append(
                error(
                    "FOLDER_TOO_MANY_FILES",
                    f"The folder has {len(group)} {what}; modeldrop reads at most {limit}.",
                    None,
                    "Save the model with larger shards (save_pretrained(max_shard_size='10GB')) "
                    "and remove stray files.",
                )
            )
            group.clear()


def _bound_templates(inv: Inventory, rules: dict[str, Any]) -> None:
    """Templates in the order transformers prefers them (chat_template.jinja, chat_template.json,
    then additional_chat_templates/), at most `chat_templates` of them read."""
    order = rules["chat_template_files"]
    inv.chat_templates.sort(key=lambda f: order.index(f.name) if f.name in order else len(order))
    limit = rules["limits"]["chat_templates"]
    if len(inv.chat_templates) > limit:
        skipped = inv.chat_templates[limit:]
        inv.findings.append(
            info(
                "CHAT_TEMPLATE_UNCHECKED",
                f"The folder has {len(inv.chat_templates)} chat template files; modeldrop parses "
                f"at most {limit}, so {len(skipped)} (e.g. {skipped[0].name}) are not checked.",
            )
        )
        del inv.chat_templates[limit:]
