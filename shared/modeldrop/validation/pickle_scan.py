"""Scan PyTorch pickle weights (`*.bin`, torch.save) for unsafe imports without unpickling them.

Only the pickle data is read, never the tensor storages: for torch.save's zip format, the zip's
end records and central directory (a bounded tail) and then each `.pkl` member; for the legacy
format, a growing prefix until its five pickles end (at most 64 MiB). The opcodes are walked with
`pickletools` to check the structure and handed to picklescan, which lists the imports.
"""

from __future__ import annotations

import io
import pickletools
import struct
import zlib
from dataclasses import dataclass

from picklescan.scanner import SafetyLevel, ScanResult, scan_pickle_bytes

from modeldrop.domain.findings import Finding, error, warning
from modeldrop.errors import AccessError
from modeldrop.validation.folder import FileInfo, Folder

MAX_PICKLE_BYTES = 64 * 1024 * 1024
"""The most pickle data read from one file (a zip member, the members together, a legacy prefix)."""

MAX_CENTRAL_DIRECTORY_BYTES = 16 * 1024 * 1024
TAIL_BYTES = 66 * 1024  # end of central directory with a full 64 KiB comment, plus ZIP64 records
HEAD_BYTES = 64
LEGACY_FIRST_READ = 64 * 1024
LEGACY_PICKLES = 5  # magic number, protocol version, sys_info, the object, storage keys
TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
MAX_NAMED_IMPORTS = 10

_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_CENTRAL = b"PK\x01\x02"
_ZIP_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR_RECORD = struct.Struct("<4sLQL")
_ZIP64_EOCD_RECORD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_STORED, _DEFLATED = 0, 8

_SAFETENSORS_HINT = (
    "Convert the weights to safetensors with `model.save_pretrained(path, "
    "safe_serialization=True)` or `safetensors.torch.save_file(state_dict, "
    "'model.safetensors')` and upload the .safetensors files instead."
)
_UNSAFE_HINT = (
    "Do not load this file. Re-export the weights as safetensors from a trusted copy in a "
    "trusted environment (`model.save_pretrained(path, safe_serialization=True)` or "
    "`safetensors.torch.save_file(state_dict, 'model.safetensors')`) and upload that instead."
)
_UNREADABLE_HINT = (
    "Check that the upload completed and the file was written by torch.save, or better, "
    "re-save the weights as safetensors with `model.save_pretrained(path, "
    "safe_serialization=True)` and upload the .safetensors files."
)
_SUPPORTED = (
    "modeldrop scans .bin weights written by torch.save (a zip archive holding data.pkl, "
    "or the legacy pickle format)"
)


class _Unreadable(Exception):
    """The file is not pickle weights modeldrop can scan; the message says what was found."""


class _TooLarge(Exception):
    """The pickle data is larger than modeldrop reads; the message says what was found."""


@dataclass(frozen=True)
class _Member:
    name: str
    method: int
    flags: int
    compressed_size: int
    size: int
    offset: int


class _Reader:
    """Ranged reads of one file that reuse the bytes already fetched from its tail."""

    def __init__(self, folder: Folder, file: FileInfo) -> None:
        self.folder = folder
        self.name = file.name
        self.size = file.size
        self.window_start = 0
        self.window = b""
        self.has_tail = False

    def tail(self, length: int) -> bytes:
        data = self.folder.read_tail(self.name, length)
        self.window_start = 0 if len(data) < length else max(0, self.size - len(data))
        self.window, self.has_tail = data, True
        return data

    def read(self, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start`; never asks the folder for bytes past the end."""
        length = min(length, self.size - start)
        if length <= 0:
            return b""
        offset = start - self.window_start
        if offset >= 0 and start + length <= self.window_start + len(self.window):
            return self.window[offset : offset + length]
        return self.folder.read_range(self.name, start, length)


def scan_pickle_weights(folder: Folder, file: FileInfo) -> list[Finding]:
    """Scan one torch.save weights file: PICKLE_UNSAFE, PICKLE_WEIGHTS or why it was unreadable.

    Never unpickles and never raises, except `AccessError` when the folder cannot be read.
    """
    name = file.name
    try:
        return _scan(folder, file)
    except AccessError:
        raise
    except _TooLarge as exc:
        return [error("PICKLE_TOO_LARGE", f"{name} {exc}.", name, _SAFETENSORS_HINT)]
    except _Unreadable as exc:
        return [_unreadable(name, str(exc))]
    except Exception as exc:  # malformed input must become a finding, whatever breaks
        return [_unreadable(name, f"could not be parsed ({type(exc).__name__}: {exc})")]


def _unreadable(name: str, what: str) -> Finding:
    return error("PICKLE_UNREADABLE", f"{name} {what}; {_SUPPORTED}.", name, _UNREADABLE_HINT)


def _scan(folder: Folder, file: FileInfo) -> list[Finding]:
    if file.size == 0:
        raise _Unreadable("is empty")
    reader = _Reader(folder, file)
    if file.size <= TAIL_BYTES:
        head = reader.tail(TAIL_BYTES)[:HEAD_BYTES]
    else:
        head = reader.read(0, HEAD_BYTES)
    if not head:
        raise _Unreadable("is empty")
    if head.startswith(_ZIP_LOCAL):
        return _scan_zip(reader)
    return _scan_legacy(reader, head)


# --- torch.save zip format ------------------------------------------------------------------


def _scan_zip(reader: _Reader) -> list[Finding]:
    """Scan every `.pkl` member of a torch.save zip archive, found through its central directory."""
    name = reader.name
    if not reader.has_tail:
        reader.tail(TAIL_BYTES)
    members = [m for m in _central_directory(reader) if m.name.endswith(".pkl")]
    if not members:
        raise _Unreadable(
            "is a zip archive without a .pkl member (torch.save writes <archive>/data.pkl)"
        )
    total = sum(m.size for m in members)
    if total > MAX_PICKLE_BYTES:
        big = max(members, key=lambda m: m.size)
        raise _TooLarge(
            f"holds {total} bytes of pickle data (the largest member, {big.name}, is {big.size} "
            f"bytes); modeldrop scans at most {MAX_PICKLE_BYTES // 2**20} MiB of pickle data "
            "per file and does not deploy larger pickles"
        )
    result = ScanResult([])
    problems: list[str] = []
    for member in members:
        try:
            data = _member_bytes(reader, member)
        except _Unreadable as exc:
            problems.append(str(exc))
            continue
        failure = _picklescan(result, data, f"{name}:{member.name}", multiple=True)
        problem = _pickle_problem(data) or failure
        if problem:
            problems.append(f"holds {member.name}, which {problem}")
    unsafe = _unsafe(name, result)
    if unsafe:
        return [unsafe]
    if problems:
        raise _Unreadable("; ".join(problems))
    return [_accepted(name, result, "torch.save zip format")]


def _central_directory(reader: _Reader) -> list[_Member]:
    """The members listed by the central directory the (ZIP64) end records point to."""
    tail, tail_start = reader.window, reader.window_start
    eocd_at = _find_eocd(tail)
    if eocd_at < 0:
        raise _Unreadable(
            "starts like a zip archive but has no end-of-central-directory record "
            "(truncated or corrupt)"
        )
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, eocd_at)
    records_at = tail_start + eocd_at
    locator_at = eocd_at - _ZIP64_LOCATOR_RECORD.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == _ZIP64_LOCATOR:
        _, _, zip64_at, _ = _ZIP64_LOCATOR_RECORD.unpack_from(tail, locator_at)
        record = reader.read(zip64_at, _ZIP64_EOCD_RECORD.size)
        if len(record) < _ZIP64_EOCD_RECORD.size or not record.startswith(_ZIP64_EOCD):
            raise _Unreadable("is a zip archive whose ZIP64 end record is missing or corrupt")
        fields = _ZIP64_EOCD_RECORD.unpack(record)
        disk, cd_disk, count, cd_size, cd_offset = fields[4], fields[5], *fields[7:]
        records_at = min(records_at, zip64_at)
    if disk != 0 or cd_disk != 0:
        raise _Unreadable("is a multi-disk (split) zip archive, which torch.save never writes")
    if cd_offset + cd_size > records_at:
        raise _Unreadable(
            f"is a zip archive whose central directory ({cd_size} bytes at offset {cd_offset}) "
            "overlaps its end records (corrupt)"
        )
    if cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise _TooLarge(
            f"has a zip central directory of {cd_size} bytes; modeldrop reads at most "
            f"{MAX_CENTRAL_DIRECTORY_BYTES // 2**20} MiB of it"
        )
    directory = reader.read(cd_offset, cd_size)
    if len(directory) < cd_size:
        raise _Unreadable("is a zip archive whose central directory is truncated")
    return _parse_central_directory(directory, count)


def _find_eocd(tail: bytes) -> int:
    """Offset of the end-of-central-directory record in `tail` (-1 if none), searching back."""
    at = len(tail)
    while (at := tail.rfind(_ZIP_EOCD, 0, at)) >= 0:
        if at + _EOCD.size <= len(tail):
            comment = _EOCD.unpack_from(tail, at)[-1]
            if at + _EOCD.size + comment <= len(tail):
                return at
    return -1


def _parse_central_directory(directory: bytes, count: int) -> list[_Member]:
    members = []
    at = 0
    for index in range(count):
        if at + _CENTRAL.size > len(directory) or directory[at : at + 4] != _ZIP_CENTRAL:
            raise _Unreadable(
                f"is a zip archive whose central directory entry {index} of {count} is corrupt"
            )
        fields = _CENTRAL.unpack_from(directory, at)
        flags, method, compressed, size = fields[3], fields[4], fields[8], fields[9]
        name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
        start = at + _CENTRAL.size
        raw_name = directory[start : start + name_len]
        extra = directory[start + name_len : start + name_len + extra_len]
        at = start + name_len + extra_len + comment_len
        if at > len(directory):
            raise _Unreadable(f"is a zip archive whose central directory entry {index} is cut off")
        size, compressed, offset = _zip64_sizes(extra, size, compressed, offset)
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        members.append(_Member(name, method, flags, compressed, size, offset))
    return members


def _zip64_sizes(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """Replace the 0xFFFFFFFF fields with the values of the ZIP64 extra field (id 0x0001)."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4 : at + 4 + length]
        at += 4 + length
        if tag != 1:
            continue
        values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
        fields = [size, compressed, offset]
        for i, value in enumerate(fields):
            if value == 0xFFFFFFFF:
                if not values:
                    raise _Unreadable("is a zip archive with a short ZIP64 extra field")
                fields[i] = values.pop(0)
        return fields[0], fields[1], fields[2]
    if 0xFFFFFFFF in (size, compressed, offset):
        raise _Unreadable("is a zip archive whose ZIP64 sizes are missing")
    return size, compressed, offset


def _member_bytes(reader: _Reader, member: _Member) -> bytes:
    """The uncompressed bytes of one member, read through its local header."""
    if member.flags & 0x1:
        raise _Unreadable(f"holds an encrypted member {member.name}")
    if member.method not in (_STORED, _DEFLATED):
        raise _Unreadable(
            f"stores {member.name} with zip compression method {member.method}; only stored "
            "(torch.save's) and deflate members are supported"
        )
    if member.compressed_size > MAX_PICKLE_BYTES:
        raise _TooLarge(
            f"has a {member.compressed_size}-byte pickle member {member.name}; modeldrop scans "
            f"at most {MAX_PICKLE_BYTES // 2**20} MiB of pickle data per file"
        )
    guess = _LOCAL.size + len(member.name.encode()) + 256  # torch pads the local extra field
    raw = reader.read(member.offset, guess + member.compressed_size)
    if len(raw) < _LOCAL.size or not raw.startswith(_ZIP_LOCAL):
        raise _Unreadable(f"has no valid local header for {member.name} (corrupt zip archive)")
    fields = _LOCAL.unpack_from(raw)
    name_len, extra_len = fields[9], fields[10]
    local_name = raw[_LOCAL.size : _LOCAL.size + name_len]
    if local_name.decode("utf-8" if fields[2] & 0x800 else "cp437", "replace") != member.name:
        raise _Unreadable(f"has a local header for {member.name} under another name (corrupt)")
    start = _LOCAL.size + name_len + extra_len
    end = start + member.compressed_size
    if end > len(raw):
        raw += reader.read(member.offset + len(raw), end - len(raw))
    if end > len(raw):
        raise _Unreadable(f"is truncated inside the member {member.name}")
    data = raw[start:end]
    if member.method == _STORED:
        if member.size != member.compressed_size:
            raise _Unreadable(f"stores {member.name} uncompressed with two different sizes")
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_PICKLE_BYTES + 1)
    except zlib.error as exc:
        raise _Unreadable(f"holds a corrupt deflate member {member.name} ({exc})") from exc
    if len(out) > MAX_PICKLE_BYTES:
        raise _TooLarge(
            f"has a pickle member {member.name} that inflates past "
            f"{MAX_PICKLE_BYTES // 2**20} MiB; modeldrop does not scan larger pickles"
        )
    if not inflater.eof or len(out) != member.size:
        raise _Unreadable(f"holds a truncated or corrupt deflate member {member.name}")
    return out


# --- legacy torch.save format ---------------------------------------------------------------


def _scan_legacy(reader: _Reader, head: bytes) -> list[Finding]:
    """Scan the pickles that start a legacy torch.save file, reading a growing bounded prefix."""
    name = reader.name
    limit = min(reader.size, MAX_PICKLE_BYTES)
    prefix = head[:limit]
    while True:
        ends, problem, exhausted = _walk_pickles(prefix, LEGACY_PICKLES)
        if not (problem and exhausted and len(prefix) < limit):
            break
        grown = min(limit, max(LEGACY_FIRST_READ, len(prefix) * 4))
        more = reader.read(len(prefix), grown - len(prefix))
        if not more:
            break
        prefix += more
    starts = [0, *ends]
    chunks = [prefix[start:end] for start, end in zip(starts, ends, strict=False)]
    if problem:
        chunks.append(prefix[starts[-1] :])  # picklescan lists the imports before the break
    result = ScanResult([])
    failures: list[str] = []
    for chunk in chunks:
        failures.append(_picklescan(result, chunk, name, multiple=False))
    unsafe = _unsafe(name, result)
    if unsafe:
        return [unsafe]
    if problem:
        if exhausted and reader.size > len(prefix) and len(prefix) >= MAX_PICKLE_BYTES:
            raise _Unreadable(
                f"starts with a pickle stream whose pickle {len(ends) + 1} does not end within "
                f"the first {MAX_PICKLE_BYTES // 2**20} MiB, the most modeldrop reads"
            )
        if not ends:
            raise _Unreadable(f"is neither a zip archive nor a pickle ({problem})")
        raise _Unreadable(
            f"is a pickle stream whose pickle {len(ends) + 1} of the {LEGACY_PICKLES} that "
            f"legacy torch.save writes is truncated or corrupt ({problem})"
        )
    if any(failures):
        raise _Unreadable(f"holds a pickle that {next(f for f in failures if f)}")
    if _first_int(prefix[: ends[0]]) != TORCH_MAGIC_NUMBER:
        raise _Unreadable(
            "is a pickle but does not start with torch.save's magic number (torch.load rejects it)"
        )
    return [_accepted(name, result, "legacy torch.save format")]


def _walk_pickles(data: bytes, count: int) -> tuple[list[int], str, bool]:
    """Walk the opcodes (never executing them) of the first `count` pickles in `data`.

    Returns where each complete pickle ends, the problem that stopped the walk ("" when none)
    and whether that problem was running out of data.
    """
    stream = io.BytesIO(data)
    ends: list[int] = []
    while len(ends) < count:
        try:
            for _ in pickletools.genops(stream):
                pass
        except Exception as exc:  # pickletools raises ValueError, and others on odd input
            return ends, str(exc) or type(exc).__name__, stream.tell() >= len(data)
        ends.append(stream.tell())
    return ends, "", False


def _pickle_problem(data: bytes) -> str:
    """What is wrong with `data` as exactly one pickle ("" when nothing)."""
    ends, problem, _ = _walk_pickles(data, 1)
    if problem:
        return f"is not a valid pickle ({problem})"
    if ends[0] != len(data):
        return f"has {len(data) - ends[0]} bytes after its pickle"
    return ""


def _first_int(data: bytes) -> int | None:
    """The first integer of a pickle (torch.save's first pickle holds only its magic number)."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if "INT" in opcode.name or "LONG" in opcode.name:
                return int(arg) if isinstance(arg, int) else None
    except Exception:
        return None
    return None


# --- verdict --------------------------------------------------------------------------------


def _picklescan(result: ScanResult, data: bytes, file_id: str, multiple: bool) -> str:
    """Merge picklescan's imports of `data` into `result`; why it failed, or ""."""
    try:
        result.merge(scan_pickle_bytes(io.BytesIO(data), file_id, multiple_pickles=multiple))
    except Exception as exc:  # picklescan raises ValueError on some malformed opcodes
        return f"picklescan could not analyse ({exc})"
    return ""


def _unsafe(name: str, result: ScanResult) -> Finding | None:
    """PICKLE_UNSAFE naming the imports picklescan flags as dangerous, or None."""
    unsafe = _names(result, SafetyLevel.Dangerous)
    if not unsafe and not result.issues_count:
        return None
    shown = ", ".join(unsafe[:MAX_NAMED_IMPORTS]) or "an unsafe module"
    if len(unsafe) > MAX_NAMED_IMPORTS:
        shown += f" and {len(unsafe) - MAX_NAMED_IMPORTS} more"
    message = (
        f"{name} imports {shown}, which can run code when the file is loaded; picklescan "
        "flags it as unsafe and modeldrop does not deploy pickle weights with unsafe imports."
    )
    return error("PICKLE_UNSAFE", message, name, _UNSAFE_HINT)


def _accepted(name: str, result: ScanResult, layout: str) -> Finding:
    """The PICKLE_WEIGHTS warning for pickle weights picklescan found no unsafe import in."""
    if result.scan_err:
        raise _Unreadable("holds pickle data that picklescan could not fully parse")
    message = (
        f"{name} holds PyTorch pickle weights ({layout}); picklescan found no unsafe imports, so "
        "they are accepted, but pickle files can run code when loaded and safetensors is "
        "preferred."
    )
    unknown = _names(result, SafetyLevel.Suspicious)
    if unknown:
        message += (
            f" It also imports {', '.join(unknown[:MAX_NAMED_IMPORTS])}, which picklescan does "
            "not know to be safe."
        )
    return warning("PICKLE_WEIGHTS", message, name, _SAFETENSORS_HINT)


def _names(result: ScanResult, level: SafetyLevel) -> list[str]:
    return sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety == level})
