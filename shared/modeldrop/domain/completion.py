"""Is an uploaded folder complete? Decided from its listing alone (GCS has no folder event).

Complete means config.json, a tokenizer, tokenizer_config.json and weights, with every shard
an index names present; several shards and no index means the index is still on its way. In
marker mode the folder is complete only once the marker object exists, and anything missing
then is a rejection rather than a wait.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modeldrop.validation.folder import FileInfo


class Completion(StrEnum):
    WAIT = "wait"  # not complete yet: more objects are coming
    COMPLETE = "complete"  # validate it
    BROKEN = "broken"  # marker present but files missing: validate (and reject) now


@dataclass(frozen=True)
class Decision:
    completion: Completion
    reason: str


def folder_of(object_name: str, root_prefix: str) -> str | None:
    """The model folder an object belongs to ("models/name"), or None outside the root."""
    if not object_name.startswith(root_prefix):
        return None
    rest = object_name[len(root_prefix) :]
    name, slash, _ = rest.partition("/")
    return f"{root_prefix}{name}" if name and slash else None


def fingerprint(files: list[FileInfo]) -> str:
    """Hash of the sorted (name, generation, size) of every file: changes with any re-upload."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        digest.update(f"{f.name}\0{f.generation}\0{f.size}\n".encode())
    return digest.hexdigest()


def revision(files: list[FileInfo]) -> int:
    """A number that grows with every upload: the newest object generation (GCS generations
    are creation times in microseconds)."""
    return max((int(f.generation) for f in files if f.generation.isdigit()), default=0)


def missing_parts(
    files: list[FileInfo], index_documents: dict[str, bytes], rules: dict[str, Any]
) -> list[str]:
    """What a loadable folder still lacks, judged from root-level names and index contents.

    `rules` is the file catalog (catalog/files.json): names of config, tokenizer and weights.
    """
    names = {f.name for f in files if "/" not in f.name}
    missing = [rules["config"]] if rules["config"] not in names else []
    if not names & set(rules["tokenizer_any_of"]):
        missing.append(" or ".join(rules["tokenizer_any_of"]))
    if rules["tokenizer_config"] not in names:
        missing.append(rules["tokenizer_config"])
    suffixes = tuple(rules["weights"])
    shards = [n for n in names if n.endswith(suffixes) and n not in rules["ignored_root_files"]]
    if not shards:
        missing.append("weights (" + " or ".join(f"*{s}" for s in suffixes) + ")")
    for data in index_documents.values():
        try:
            weight_map = json.loads(data.decode("utf-8")).get("weight_map", {})
            wanted = set(weight_map.values()) if isinstance(weight_map, dict) else set()
        except (ValueError, AttributeError, UnicodeDecodeError):
            continue  # a broken index is validation's business, not completion's
        missing.extend(sorted(str(s) for s in wanted - names))
    index_suffix = rules["index_suffix"]
    for suffix in suffixes:
        group = [n for n in shards if n.endswith(suffix)]
        if len(group) > 1 and not any(i.endswith(suffix + index_suffix) for i in index_documents):
            missing.append(f"the *{suffix}{index_suffix} of {len(group)} shards")
    return missing


def decide(
    files: list[FileInfo],
    index_documents: dict[str, bytes],
    mode: str,
    marker: str,
    rules: dict[str, Any],
) -> Decision:
    """Whether to wait, validate, or validate-and-reject a folder in its current state."""
    names = {f.name for f in files}
    if mode == "marker":
        if marker not in names:
            return Decision(Completion.WAIT, f"waiting for the marker {marker}")
        missing = missing_parts([f for f in files if f.name != marker], index_documents, rules)
        if missing:
            return Decision(Completion.BROKEN, f"marker present but missing: {', '.join(missing)}")
        return Decision(Completion.COMPLETE, f"marker {marker} present")
    missing = missing_parts(files, index_documents, rules)
    if missing:
        return Decision(Completion.WAIT, f"waiting for: {', '.join(missing)}")
    return Decision(Completion.COMPLETE, "config, tokenizer and every shard present")
