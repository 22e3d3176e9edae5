"""Weight index files (*.index.json): every shard they name exists and holds its tensors."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from modeldrop import catalog
from modeldrop.domain.findings import Finding, error, excerpt, warning
from modeldrop.errors import InputError
from modeldrop.validation.safetensors_header import SafetensorsHeader

INDEX_HINT = "Upload the index written by save_pretrained() together with all of its shards."
SHOWN = 3  # names quoted in one message


class IndexFileError(InputError):
    """An index file that is not a usable weight map."""


def _names(names: list[str]) -> str:
    shown = ", ".join(excerpt(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def parse_index(data: bytes) -> dict[str, str]:
    """The weight_map of an index file: tensor name -> shard file name.

    Bounded: the entries are counted before the JSON is parsed, and the shards after.
    Raises IndexFileError (INDEX_INVALID, INDEX_TOO_LARGE) and nothing else.
    """
    limits = catalog.file_rules()["limits"]
    entries, shards_limit = limits["index_entries"], limits["safetensors_files"]
    if data.count(b",") > entries:
        raise IndexFileError(
            f"holds more than {entries} JSON values; modeldrop reads indexes of at most "
            f"{entries} tensors (the largest supported base model has about 92,000)",
            INDEX_HINT,
            code="INDEX_TOO_LARGE",
        )
    try:
        document: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IndexFileError(
            f"is not valid UTF-8 JSON ({type(exc).__name__})", INDEX_HINT, code="INDEX_INVALID"
        ) from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise IndexFileError(
            "has no 'weight_map' object mapping tensor names to shard file names",
            INDEX_HINT,
            code="INDEX_INVALID",
        )
    shards = len(set(weight_map.values()))
    if shards > shards_limit:
        raise IndexFileError(
            f"names {shards} shards; modeldrop reads at most {shards_limit} per folder",
            "Save the model with larger shards (save_pretrained(max_shard_size='10GB')).",
            code="INDEX_TOO_LARGE",
        )
    return weight_map


def check_index(
    index_name: str,
    weight_map: dict[str, str],
    present: set[str],
    headers: dict[str, SafetensorsHeader],
) -> list[Finding]:
    """Shards the index names but the folder lacks; tensors a shard's header does not hold."""
    findings: list[Finding] = []
    by_shard: dict[str, list[str]] = defaultdict(list)
    for tensor, shard in weight_map.items():
        by_shard[shard].append(tensor)
    shards = sorted(by_shard)
    missing = [s for s in shards if s not in present]
    if missing:
        findings.append(
            error(
                "INDEX_SHARD_MISSING",
                f"{index_name} names {len(shards)} shards; {len(missing)} are not in the folder: "
                f"{_names(missing)}.",
                index_name,
                INDEX_HINT + " If the upload is still running, wait for it to finish.",
            )
        )
    for shard in shards:
        header = headers.get(shard)
        if header is None:
            continue
        absent = sorted(t for t in by_shard[shard] if t not in header.tensors)
        if absent:
            findings.append(
                error(
                    "INDEX_TENSOR_MISSING",
                    f"{index_name} maps {len(absent)} tensors to {shard} that its header does not "
                    f"hold: {_names(absent)}.",
                    shard,
                    INDEX_HINT,
                )
            )
        unlisted = sorted(t for t in header.tensors if weight_map.get(t) != shard)
        if unlisted:
            findings.append(
                warning(
                    "INDEX_TENSOR_UNLISTED",
                    f"{shard} holds {len(unlisted)} tensors {index_name} does not map to it: "
                    f"{_names(unlisted)}.",
                    shard,
                    "They will not be loaded; re-save the model if they are needed.",
                )
            )
    for name in sorted(set(headers) - set(shards)):
        findings.append(
            warning(
                "INDEX_SHARD_UNREFERENCED",
                f"{name} is not named by {index_name}; it will not be loaded.",
                name,
                "Remove the stray file or upload the matching index.",
            )
        )
    return findings
