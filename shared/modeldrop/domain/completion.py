"""Is an uploaded folder complete? Decided from its listing alone (GCS has no folder event).

Complete means config.json, a tokenizer, tokenizer_config.json and weights, with every shard
an index names present; several shards and no index means the index is still on its way. An
index that is not a weight map names no shard: objects are whole once listed, so it will not
get better, and validation rejects it. In marker mode the folder is complete only once the
marker object exists, and anything missing then is a rejection rather than a wait.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modeldrop.domain.folder import FileInfo


class Completion(StrEnum):
    WAIT = "wait"  # not complete yet: more objects are coming
    COMPLETE = "complete"  # validate it
    BROKEN = "broken"  # marker present but files missing: validate (and reject) now


@dataclass(frozen=True)
class Decision:
    completion: Completion
    reason: str


MAX_NAME_BYTES = 1024  # GCS object names are 1-1024 bytes of UTF-8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def name_problem(object_name: str) -> str | None:
    """Why no upload can have this object name (None when one can): longer than GCS allows,
    not UTF-8, control characters, or an empty, '.' or '..' path segment (a trailing '/' aside,
    which folder placeholders have)."""
    try:
        size = len(object_name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if not 0 < size <= MAX_NAME_BYTES:
        return f"it is {size} bytes long; GCS object names have 1-{MAX_NAME_BYTES}"
    if _CONTROL.search(object_name):
        return "it holds control characters"
    if any(part in ("", ".", "..") for part in object_name.removesuffix("/").split("/")):
        return "it has an empty, '.' or '..' path segment"
    return None


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
    files: list[FileInfo], indexes: Mapping[str, Collection[str]], rules: dict[str, Any]
) -> list[str]:
    """What a loadable folder still lacks, judged from root-level names and index contents.

    `indexes` maps each root-level index file to the shard names its weight map holds (none
    for an index that is not a weight map). `rules` is the file catalog (catalog/files.json):
    names of config, tokenizer and weights.
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
    for shard_names in indexes.values():
        if all(_root_file(s) for s in shard_names):  # else no upload can complete it: broken
            missing.extend(sorted(set(shard_names) - names))
    index_suffix = rules["index_suffix"]
    for suffix in suffixes:
        group = [n for n in shards if n.endswith(suffix)]
        if len(group) > 1 and not any(i.endswith(suffix + index_suffix) for i in indexes):
            missing.append(f"the *{suffix}{index_suffix} of {len(group)} shards")
    return missing


def _root_file(name: str) -> bool:
    return "/" not in name and name_problem(name) is None


def _some(names: list[str], shown: int = 5) -> str:
    text = ", ".join(name[:100] for name in names[:shown])
    return text + (f" ... ({len(names)} in all)" if len(names) > shown else "")


def decide(
    files: list[FileInfo],
    indexes: Mapping[str, Collection[str]],
    mode: str,
    marker: str,
    rules: dict[str, Any],
) -> Decision:
    """Whether to wait, validate, or validate-and-reject a folder in its current state. A folder
    listed past the listing bound is never complete: it is validated, and rejected, at once."""
    listed = rules["limits"]["listed_files"]
    if len(files) > listed:
        return Decision(Completion.BROKEN, f"more than {listed} objects under the folder")
    names = {f.name for f in files}
    if mode == "marker":
        if marker not in names:
            return Decision(Completion.WAIT, f"waiting for the marker {marker}")
        missing = missing_parts([f for f in files if f.name != marker], indexes, rules)
        if missing:
            return Decision(Completion.BROKEN, f"marker present but missing: {_some(missing)}")
        return Decision(Completion.COMPLETE, f"marker {marker} present")
    missing = missing_parts(files, indexes, rules)
    if missing:
        return Decision(Completion.WAIT, f"waiting for: {_some(missing)}")
    return Decision(Completion.COMPLETE, "config, tokenizer and every shard present")
