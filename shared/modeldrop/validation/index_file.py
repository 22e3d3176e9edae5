"""Weight index files (*.index.json): every shard they name exists and holds its tensors."""

from __future__ import annotations

import json
from typing import Any

from modeldrop.domain.findings import Finding, error, warning
from modeldrop.validation.safetensors_header import SafetensorsHeader

INDEX_HINT = "Upload the index written by save_pretrained() together with all of its shards."


class IndexFileError(ValueError):
    """An index file that is not a usable weight map."""


def parse_index(data: bytes) -> dict[str, str]:
    """The weight_map of an index file: tensor name -> shard file name."""
    try:
        document: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IndexFileError(f"is not valid UTF-8 JSON ({type(exc).__name__})") from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise IndexFileError("has no 'weight_map' object mapping tensor names to shard files")
    return weight_map


def check_index(
    index_name: str,
    weight_map: dict[str, str],
    present: set[str],
    headers: dict[str, SafetensorsHeader],
) -> list[Finding]:
    """Shards the index names but the folder lacks; tensors a shard's header does not hold."""
    findings: list[Finding] = []
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if s not in present]
    if missing:
        findings.append(
            error(
                "INDEX_SHARD_MISSING",
                f"{index_name} names {len(shards)} shards; {len(missing)} are not in the folder: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.",
                index_name,
                INDEX_HINT + " If the upload is still running, wait for it to finish.",
            )
        )
    for shard in shards:
        header = headers.get(shard)
        if header is None:
            continue
        absent = sorted(t for t, s in weight_map.items() if s == shard and t not in header.tensors)
        if absent:
            findings.append(
                error(
                    "INDEX_TENSOR_MISSING",
                    f"{index_name} maps {len(absent)} tensors to {shard} that its header does not "
                    f"hold: {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}.",
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
                    f"{', '.join(unlisted[:3])}{' ...' if len(unlisted) > 3 else ''}.",
                    shard,
                    "They will not be loaded; re-save the model if they are needed.",
                )
            )
    indexed = set(shards)
    for name in sorted(set(headers) - indexed):
        findings.append(
            warning(
                "INDEX_SHARD_UNREFERENCED",
                f"{name} is not named by {index_name}; it will not be loaded.",
                name,
                "Remove the stray file or upload the matching index.",
            )
        )
    return findings
