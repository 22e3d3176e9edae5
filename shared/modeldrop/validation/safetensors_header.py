"""Parse and check a safetensors header from at most two ranged reads, never the tensor data.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the data region. Every
problem raises `HeaderError` with a stable code; nothing else escapes the parser. Everything is
bounded before it is allocated (header bytes, tensors per header, dimensions) and every size is
exact integer arithmetic.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from modeldrop.catalog import dtype_bits
from modeldrop.domain.findings import excerpt
from modeldrop.domain.folder import FileInfo, Folder
from modeldrop.errors import InputError

FIRST_READ_BYTES = 16 * 1024
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_TENSORS = 150_000
"""Tensors in one header (DeepSeek-V3's 91,991 tensors would fit in one file)."""
MAX_JSON_VALUES = 20 * MAX_TENSORS
"""Commas in one header: a cheap upper bound on its JSON values, checked before parsing."""
MAX_DIMS = 8
MAX_DIMENSION = 2**40
MAX_OFFSET = 2**64 - 1  # safetensors offsets are u64
TENSOR_KEY = b'"data_offsets"'


class HeaderError(InputError):
    """A safetensors file whose header cannot be trusted."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    header_length: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def data_end(self) -> int:
        return max((t.end for t in self.tensors.values()), default=0)


REPAIR_HINT = (
    "Re-upload the file; if it is wrong at the source, re-save the model with "
    "save_pretrained(safe_serialization=True)."
)


def header_length(prefix: bytes, file_size: int) -> int:
    """The declared header length, bounded before anything is allocated."""
    if file_size < 8 or len(prefix) < 8:
        raise HeaderError(
            f"the file is {file_size} bytes, too short to hold a safetensors header",
            REPAIR_HINT,
            code="SAFETENSORS_TOO_SHORT",
        )
    (length,) = struct.unpack("<Q", prefix[:8])
    if length == 0 or length > MAX_HEADER_BYTES:
        raise HeaderError(
            f"the header declares {length} bytes of JSON; a valid header is 1 byte to "
            f"{MAX_HEADER_BYTES // 2**20} MiB",
            "The file is corrupt or not a safetensors file. " + REPAIR_HINT,
            code="SAFETENSORS_HEADER_TOO_LARGE",
        )
    if 8 + length > file_size:
        raise HeaderError(
            f"the header declares {length} bytes but the file has only {file_size - 8} "
            "after the length prefix",
            "The upload was cut short. " + REPAIR_HINT,
            code="SAFETENSORS_TRUNCATED",
        )
    return length


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise HeaderError(
                f"tensor {excerpt(key)} appears twice",
                REPAIR_HINT,
                code="SAFETENSORS_HEADER_INVALID",
            )
        seen[key] = value
    return seen


def _ints_within(values: list[Any], bound: int) -> bool:
    """Every value is an int (not a bool) from 0 to `bound`."""
    return all(type(value) is int and 0 <= value <= bound for value in values)


def _tensor(name: str, entry: Any, widths: dict[str, int]) -> TensorInfo:
    if not isinstance(entry, dict):
        raise HeaderError(
            f"tensor {excerpt(name)} is not an object",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        )
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    bits = widths.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise HeaderError(
            f"tensor {excerpt(name)} has dtype {excerpt(dtype)}; known dtypes are "
            + ", ".join(sorted(dtype_bits())),
            REPAIR_HINT,
            code="SAFETENSORS_UNKNOWN_DTYPE",
        )
    if not (
        isinstance(shape, list) and len(shape) <= MAX_DIMS and _ints_within(shape, MAX_DIMENSION)
    ):
        raise HeaderError(
            f"tensor {excerpt(name)} has shape {excerpt(shape)}; expected a list of at most "
            f"{MAX_DIMS} integers from 0 to 2**40",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        )
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and _ints_within(offsets, MAX_OFFSET)
        and offsets[0] <= offsets[1]
    ):
        raise HeaderError(
            f"tensor {excerpt(name)} has data_offsets {excerpt(offsets)}; expected [begin, end] "
            "with 0 <= begin <= end < 2**64",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        )
    start, end = offsets
    expected = (math.prod(shape) * bits + 7) // 8  # exact: ceil(elements * bits / 8)
    if end - start != expected:
        raise HeaderError(
            f"tensor {excerpt(name)} ({dtype} {shape}) needs {expected} bytes but its offsets "
            f"span {end - start}",
            REPAIR_HINT,
            code="SAFETENSORS_TENSOR_SIZE_MISMATCH",
        )
    return TensorInfo(name, str(dtype), tuple(shape), start, end)


def tensor_count_bound(raw: bytes) -> int:
    """An upper bound on the tensors a raw header declares, counted without parsing it."""
    return raw.count(TENSOR_KEY)


def _check_size(raw: bytes) -> None:
    tensors = tensor_count_bound(raw)
    if tensors > MAX_TENSORS:
        raise HeaderError(
            f"the header declares about {tensors} tensors; modeldrop reads at most "
            f"{MAX_TENSORS} per file",
            "Save the model in shards: save_pretrained(max_shard_size='5GB').",
            code="SAFETENSORS_TOO_MANY_TENSORS",
        )
    values = raw.count(b",")
    if values > MAX_JSON_VALUES:
        raise HeaderError(
            f"the header holds more than {MAX_JSON_VALUES} JSON values ({values} commas); a "
            f"header of {MAX_TENSORS} tensors needs fewer",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        )


def _entries(document: dict[str, Any]) -> int:
    return sum(1 for v in document.values() if isinstance(v, dict) and "data_offsets" in v)


def _load(raw: bytes) -> Any:
    """The header JSON. Duplicate keys are checked on the slow path only when the tensor count
    says some key was lost (json keeps the last of duplicates)."""
    text = raw.decode("utf-8")
    document = json.loads(text)
    if isinstance(document, dict) and _entries(document) < tensor_count_bound(raw):
        document = json.loads(text, object_pairs_hook=_reject_duplicates)
    return document


def parse_header(raw: bytes, length: int, file_size: int) -> SafetensorsHeader:
    """Check the JSON header and the layout it declares against the file size."""
    _check_size(raw)
    try:
        document = _load(raw)
    except HeaderError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HeaderError(
            f"the header is not valid UTF-8 JSON ({type(exc).__name__})",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        ) from None
    if not isinstance(document, dict):
        raise HeaderError(
            f"the header is a JSON {type(document).__name__}, not an object",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        )
    metadata = document.pop("__metadata__", {})
    if not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise HeaderError(
            "__metadata__ must map strings to strings",
            REPAIR_HINT,
            code="SAFETENSORS_HEADER_INVALID",
        )
    widths = dtype_bits()
    tensors = {name: _tensor(name, entry, widths) for name, entry in document.items()}
    position = 0
    for tensor in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if tensor.start < position:
            raise HeaderError(
                f"tensor {excerpt(tensor.name)} starts at byte {tensor.start}, inside the "
                "previous tensor",
                REPAIR_HINT,
                code="SAFETENSORS_OFFSETS_OVERLAP",
            )
        if tensor.start > position:
            raise HeaderError(
                f"tensor {excerpt(tensor.name)} starts at byte {tensor.start}, leaving "
                f"{tensor.start - position} unused bytes before it",
                REPAIR_HINT,
                code="SAFETENSORS_OFFSETS_GAP",
            )
        position = tensor.end
    expected_size = 8 + length + position
    if file_size < expected_size:
        raise HeaderError(
            f"the file is {file_size} bytes but its header describes {expected_size}; "
            f"{expected_size - file_size} bytes are missing",
            "The upload was cut short. " + REPAIR_HINT,
            code="SAFETENSORS_TRUNCATED",
        )
    if file_size > expected_size:
        raise HeaderError(
            f"the file is {file_size} bytes but its header describes {expected_size}; "
            f"{file_size - expected_size} bytes follow the last tensor",
            REPAIR_HINT,
            code="SAFETENSORS_PADDED",
        )
    return SafetensorsHeader(length, tensors, metadata)


@dataclass(frozen=True)
class HeaderPrefix:
    """The first read of a file: its declared header length and the header bytes it holds."""

    length: int
    raw: bytes


def read_prefix(folder: Folder, file: FileInfo) -> HeaderPrefix:
    """The first ranged read of one file, with the header length checked."""
    prefix = folder.read_range(file.name, 0, min(FIRST_READ_BYTES, file.size))
    length = header_length(prefix, file.size)
    return HeaderPrefix(length, prefix[8 : 8 + length])


def read_rest(folder: Folder, file: FileInfo, prefix: HeaderPrefix) -> bytes:
    """The whole raw header: the second read, only when the header is longer than the first."""
    raw, length = prefix.raw, prefix.length
    if len(raw) < length:
        raw += folder.read_range(file.name, 8 + len(raw), length - len(raw))
    if len(raw) < length:
        raise HeaderError(
            f"the header declares {length} bytes but only {len(raw)} could be read",
            REPAIR_HINT,
            code="SAFETENSORS_TRUNCATED",
        )
    return raw


def read_header(folder: Folder, file: FileInfo) -> SafetensorsHeader:
    """Fetch and parse the header of one file: one read, two when the header is long."""
    prefix = read_prefix(folder, file)
    return parse_header(read_rest(folder, file, prefix), prefix.length, file.size)
