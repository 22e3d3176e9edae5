"""Parse and check a safetensors header from at most two ranged reads, never the tensor data.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the data region. Every
problem raises `HeaderError` with a stable code; nothing else escapes the parser.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from modeldrop.catalog import dtype_bits
from modeldrop.errors import InputError
from modeldrop.validation.folder import FileInfo, Folder

FIRST_READ_BYTES = 16 * 1024
MAX_HEADER_BYTES = 100 * 1024 * 1024


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
            "SAFETENSORS_TOO_SHORT",
            f"the file is {file_size} bytes, too short to hold a safetensors header",
            REPAIR_HINT,
        )
    (length,) = struct.unpack("<Q", prefix[:8])
    if length == 0 or length > MAX_HEADER_BYTES:
        raise HeaderError(
            "SAFETENSORS_HEADER_TOO_LARGE",
            f"the header declares {length} bytes of JSON; a valid header is 1 byte to "
            f"{MAX_HEADER_BYTES // 2**20} MiB",
            "The file is corrupt or not a safetensors file. " + REPAIR_HINT,
        )
    if 8 + length > file_size:
        raise HeaderError(
            "SAFETENSORS_TRUNCATED",
            f"the header declares {length} bytes but the file has only {file_size - 8} "
            "after the length prefix",
            "The upload was cut short. " + REPAIR_HINT,
        )
    return length


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise HeaderError("SAFETENSORS_HEADER_INVALID", f"tensor {key!r} appears twice")
        seen[key] = value
    return seen


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor(name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise HeaderError("SAFETENSORS_HEADER_INVALID", f"tensor {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    bits = dtype_bits().get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise HeaderError(
            "SAFETENSORS_UNKNOWN_DTYPE",
            f"tensor {name!r} has dtype {dtype!r}; known dtypes are "
            + ", ".join(sorted(dtype_bits())),
            REPAIR_HINT,
        )
    if not (isinstance(shape, list) and len(shape) <= 64 and all(_is_int(d) for d in shape)):
        raise HeaderError(
            "SAFETENSORS_HEADER_INVALID",
            f"tensor {name!r} has shape {shape!r}; expected a list of non-negative integers",
        )
    if (
        not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets))
        or offsets[0] > offsets[1]
    ):
        raise HeaderError(
            "SAFETENSORS_HEADER_INVALID",
            f"tensor {name!r} has data_offsets {offsets!r}; expected [begin, end], begin <= end",
        )
    start, end = offsets
    expected = math.ceil(math.prod(shape) * bits / 8)
    if end - start != expected:
        raise HeaderError(
            "SAFETENSORS_TENSOR_SIZE_MISMATCH",
            f"tensor {name!r} ({dtype} {shape}) needs {expected} bytes but its offsets span "
            f"{end - start}",
            REPAIR_HINT,
        )
    return TensorInfo(name, dtype, tuple(shape), start, end)


def parse_header(raw: bytes, length: int, file_size: int) -> SafetensorsHeader:
    """Check the JSON header and the layout it declares against the file size."""
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except HeaderError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HeaderError(
            "SAFETENSORS_HEADER_INVALID",
            f"the header is not valid UTF-8 JSON ({type(exc).__name__})",
            REPAIR_HINT,
        ) from None
    if not isinstance(document, dict):
        raise HeaderError(
            "SAFETENSORS_HEADER_INVALID",
            f"the header is a JSON {type(document).__name__}, not an object",
            REPAIR_HINT,
        )
    metadata = document.pop("__metadata__", {})
    if not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise HeaderError(
            "SAFETENSORS_HEADER_INVALID", "__metadata__ must map strings to strings", REPAIR_HINT
        )
    tensors = {name: _tensor(name, entry) for name, entry in document.items()}
    position = 0
    for tensor in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if tensor.start < position:
            raise HeaderError(
                "SAFETENSORS_OFFSETS_OVERLAP",
                f"tensor {tensor.name!r} starts at byte {tensor.start}, inside the previous tensor",
                REPAIR_HINT,
            )
        if tensor.start > position:
            raise HeaderError(
                "SAFETENSORS_OFFSETS_GAP",
                f"tensor {tensor.name!r} starts at byte {tensor.start}, leaving "
                f"{tensor.start - position} unused bytes before it",
                REPAIR_HINT,
            )
        position = tensor.end
    expected_size = 8 + length + position
    if file_size < expected_size:
        raise HeaderError(
            "SAFETENSORS_TRUNCATED",
            f"the file is {file_size} bytes but its header describes {expected_size}; "
            f"{expected_size - file_size} bytes are missing",
            "The upload was cut short. " + REPAIR_HINT,
        )
    if file_size > expected_size:
        raise HeaderError(
            "SAFETENSORS_PADDED",
            f"the file is {file_size} bytes but its header describes {expected_size}; "
            f"{file_size - expected_size} bytes follow the last tensor",
            REPAIR_HINT,
        )
    return SafetensorsHeader(length, tensors, metadata)


def read_header(folder: Folder, file: FileInfo) -> SafetensorsHeader:
    """Fetch and parse the header of one file: one read, two when the header is long."""
    prefix = folder.read_range(file.name, 0, min(FIRST_READ_BYTES, file.size))
    length = header_length(prefix, file.size)
    raw = prefix[8 : 8 + length]
    if len(raw) < length:
        raw += folder.read_range(file.name, 8 + len(raw), length - len(raw))
    if len(raw) < length:
        raise HeaderError(
            "SAFETENSORS_TRUNCATED",
            f"the header declares {length} bytes but only {len(raw)} could be read",
            REPAIR_HINT,
        )
    return parse_header(raw, length, file.size)
