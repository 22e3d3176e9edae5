"""Scan PyTorch pickle weights (`*.bin`, torch.save) against an allowlist, never unpickling them.

What `torch.load(path, weights_only=False)` would unpickle is found the way torch finds it, and a
file two loaders could read differently is refused (PICKLE_AMBIGUOUS) rather than guessed at:

- A file starting with a zip local header is a zip archive, as for torch's `_is_zipfile`; it is
  read by `zip_reader`, which refuses archives zip readers disagree on (see there). Its members
  must all sit under one top-level folder and hold `<archive>/data.pkl`, names compared ignoring
  ASCII case as torch's miniz does; every member whose name ends in `.pkl` in any case (data.pkl,
  TorchScript's constants.pkl, ...) is scanned, never the `data/N` tensor storages. A zip with
  data before its first local header does not start with one, so torch reads it as legacy
  pickles and so does modeldrop; one starting with a local header that its directory does not
  list, or whose directory does not end at its end records (zipfile then shifts every offset,
  miniz does not), is ambiguous.
- Any other file is the legacy format. torch first tries it as a tar archive (the pre-1.0
  format, whose members hold more pickles), so a file whose first 512 bytes are a tar header with
  a valid checksum is ambiguous. Otherwise the five pickles it starts with are scanned, read from
  a growing prefix of at most MAX_PICKLE_BYTES (one that does not end there is too large).
- Each pickle's opcodes are walked with pickletools. Every global it imports must be on the
  allowlist (catalog/pickle_globals.json: what torch.save writes for tensors), compared as
  pickle resolves it: GLOBAL and INST name it, STACK_GLOBAL takes the two strings pushed just
  before it (constants, or memo entries holding them: operands computed at load time are
  unsafe), and protocols below 3 apply pickle's Python 2 renames first. The copyreg extension
  opcodes (EXT1/2/4) are unsafe. The allowlisted callables only build tensors, storages and
  plain containers, so a pickle limited to them cannot reach code.

Bytes read grow with the pickle data, not the tensors: the head, a bounded tail, the central
directory and the `.pkl` members.
"""

from __future__ import annotations

import io
import pickletools
import tarfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from typing import cast

from modeldrop import catalog
from modeldrop.domain.findings import Finding, error, excerpt, warning
from modeldrop.domain.folder import FileInfo, Folder
from modeldrop.errors import AccessError
from modeldrop.validation.zip_reader import (
    Member,
    RangedFile,
    ZipAmbiguous,
    ZipArchive,
    ZipError,
    ZipTooLarge,
)

MAX_PICKLE_BYTES = 64 * 1024 * 1024
"""The most pickle data read from one file (the `.pkl` members together, or a legacy prefix)."""

HEAD_BYTES = 512  # one tar header block
LEGACY_FIRST_READ = 64 * 1024
LEGACY_PICKLES = 5  # magic number, protocol version, sys_info, the object, storage keys
TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
MAX_NAMED = 5

_ZIP_LOCAL = b"PK\x03\x04"
_STRING_PUSHES = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",  # the STRING family pushes str too: torch.load decodes it as UTF-8
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_STACK_NEUTRAL = frozenset({"FRAME"})  # opcodes that leave the stack as it is
_INTS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})

_SAFETENSORS_HINT = (
    "Convert the weights to safetensors with `model.save_pretrained(path, "
    "safe_serialization=True)` or `safetensors.torch.save_file(state_dict, "
    "'model.safetensors')` and upload the .safetensors files instead."
)
_RESAVE = (
    "Re-export the weights as safetensors from a trusted copy in a trusted environment "
    "(`model.save_pretrained(path, safe_serialization=True)` or "
    "`safetensors.torch.save_file(state_dict, 'model.safetensors')`) and upload that instead."
)
_UNSAFE_HINT = f"Do not load this file. {_RESAVE}"
_AMBIGUOUS_HINT = f"Do not load this file with torch.load. {_RESAVE}"
_UNREADABLE_HINT = (
    "Check that the upload completed and the file was written by torch.save, or better, "
    "re-save the weights as safetensors with `model.save_pretrained(path, "
    "safe_serialization=True)` and upload the .safetensors files."
)
_SUPPORTED = (
    "modeldrop scans .bin weights written by torch.save (a zip archive holding data.pkl, "
    "or the legacy pickle format)"
)


_ENDINGS = {  # code: (the end of the message, after what was found; the hint)
    "PICKLE_UNSAFE": (".", _UNSAFE_HINT),
    "PICKLE_AMBIGUOUS": (
        "; loaders could read different pickles from it, so modeldrop refuses it rather than "
        "guess which.",
        _AMBIGUOUS_HINT,
    ),
    "PICKLE_TOO_LARGE": (".", _SAFETENSORS_HINT),
    "PICKLE_UNREADABLE": (f"; {_SUPPORTED}.", _UNREADABLE_HINT),
}


class _Refused(Exception):
    """The file gets the error finding `code`; the message says what was found."""

    def __init__(self, code: str, what: str) -> None:
        super().__init__(what)
        self.code = code


def scan_pickle_weights(folder: Folder, file: FileInfo) -> list[Finding]:
    """Scan one torch.save weights file: PICKLE_WEIGHTS (a warning) or the error that refuses it.

    Never unpickles and never raises, except `AccessError` when the folder cannot be read.
    """
    try:
        return [_scan(RangedFile(folder, file))]
    except AccessError:
        raise
    except ZipError as exc:
        return [_refusal(file.name, _zip_refusal(exc))]
    except _Refused as exc:
        return [_refusal(file.name, exc)]
    except Exception as exc:  # malformed input must become a finding, whatever breaks
        what = f"could not be parsed ({type(exc).__name__}: {excerpt(str(exc))})"
        return [_refusal(file.name, _Refused("PICKLE_UNREADABLE", what))]


def _scan(file: RangedFile) -> Finding:
    if file.size == 0:
        raise _Refused("PICKLE_UNREADABLE", "is empty")
    head = file.read(0, HEAD_BYTES, keep=True)
    if head.startswith(_ZIP_LOCAL):
        return _scan_zip(ZipArchive(file))
    return _scan_legacy(file, head)


# --- torch.save zip format ------------------------------------------------------------------


def _scan_zip(archive: ZipArchive) -> Finding:
    """Scan every `.pkl` member of a torch.save zip archive."""
    pickles = _pickle_members(archive.members)
    total = sum(m.size for m in pickles)
    if total > MAX_PICKLE_BYTES:
        big = max(pickles, key=lambda m: m.size)
        raise _Refused(
            "PICKLE_TOO_LARGE",
            f"holds {total} bytes of pickle data (the largest member, {excerpt(big.name)}, is "
            f"{big.size} bytes); modeldrop scans at most {MAX_PICKLE_BYTES // 2**20} MiB of "
            "pickle data per file and does not deploy larger pickles",
        )
    unsafe: dict[str, None] = {}
    refusals: list[_Refused] = []
    for member in pickles:
        try:
            data = archive.read(member, MAX_PICKLE_BYTES)
        except ZipError as exc:
            refusals.append(_zip_refusal(exc))
            continue
        walk = _walk(data, 1)
        unsafe.update(walk.unsafe)
        if walk.problem:
            problem = f"is not a valid pickle ({walk.problem})"
        elif walk.ends[0] < len(data):
            problem = f"has {len(data) - walk.ends[0]} bytes after its pickle"
        else:
            continue
        what = f"holds {excerpt(member.name)}, which {problem}"
        refusals.append(_Refused("PICKLE_UNREADABLE", what))
    if unsafe:
        raise _unsafe(list(unsafe))
    if refusals:
        raise refusals[0]
    return _accepted(archive.file.name, "torch.save zip format")


def _pickle_members(members: list[Member]) -> list[Member]:
    """The `.pkl` members, once the archive is known to have one folder holding data.pkl."""
    if not members:
        raise _Refused("PICKLE_UNREADABLE", "is an empty zip archive")
    folders = {m.key.partition(b"/")[0] for m in members}
    if len(folders) != 1 or any(b"/" not in m.key for m in members):
        raise _Refused(
            "PICKLE_AMBIGUOUS",
            "has zip members outside one top-level folder (torch.save writes every member "
            "under <archive>/, and torch takes the folder from the first member)",
        )
    data_pkl = next(iter(folders)) + b"/data.pkl"
    if not any(m.key == data_pkl for m in members):
        raise _Refused(
            "PICKLE_UNREADABLE",
            "is a zip archive without <archive>/data.pkl (the pickle torch.save writes)",
        )
    return [m for m in members if m.key.endswith(b".pkl")]


# --- legacy torch.save format ---------------------------------------------------------------


def _scan_legacy(file: RangedFile, head: bytes) -> Finding:
    """Scan the pickles that start a legacy torch.save file, reading a growing bounded prefix."""
    if _is_tar_header(head):
        raise _Refused(
            "PICKLE_AMBIGUOUS",
            "starts with a valid tar header, and torch.load opens such a file as a tar archive "
            "(the pre-1.0 torch.save format) before reading it as pickles",
        )
    limit = min(file.size, MAX_PICKLE_BYTES)
    prefix = head[:limit]
    while True:
        walk = _walk(prefix, LEGACY_PICKLES)
        if walk.unsafe or not (walk.exhausted and len(prefix) < limit):
            break
        grown = min(limit, max(LEGACY_FIRST_READ, len(prefix) * 4))
        prefix += file.read(len(prefix), grown - len(prefix))
    if walk.unsafe:
        raise _unsafe(list(walk.unsafe))
    if walk.problem:
        raise _legacy_problem(walk, reached_bound=len(prefix) < file.size)
    if _first_int(prefix[: walk.ends[0]]) != TORCH_MAGIC_NUMBER:
        raise _Refused(
            "PICKLE_UNREADABLE",
            "is a pickle but does not start with torch.save's magic number (torch.load rejects it)",
        )
    return _accepted(file.name, "legacy torch.save format")


def _legacy_problem(walk: _Walk, reached_bound: bool) -> _Refused:
    """Why the pickles of a legacy file could not all be walked."""
    number = len(walk.ends) + 1
    if walk.exhausted and reached_bound:
        return _Refused(
            "PICKLE_TOO_LARGE",
            f"starts with a pickle stream whose pickle {number} does not end within the first "
            f"{MAX_PICKLE_BYTES // 2**20} MiB, the most modeldrop reads",
        )
    if not walk.ends:
        return _Refused(
            "PICKLE_UNREADABLE", f"is neither a zip archive nor a pickle ({walk.problem})"
        )
    return _Refused(
        "PICKLE_UNREADABLE",
        f"is a pickle stream whose pickle {number} of the {LEGACY_PICKLES} that legacy "
        f"torch.save writes is truncated or corrupt ({walk.problem})",
    )


def _is_tar_header(head: bytes) -> bool:
    """Whether tarfile (as torch's legacy loader calls it) would take `head` for a tar header."""
    block = head[: tarfile.BLOCKSIZE]
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _first_int(data: bytes) -> int | None:
    """The first integer of a pickle (torch.save's first pickle holds only its magic number)."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _INTS:
                return arg if isinstance(arg, int) else None
    except Exception:
        return None
    return None


# --- the opcode walk ------------------------------------------------------------------------


@dataclass
class _Walk:
    """What walking the opcodes of up to `count` pickles found."""

    unsafe: dict[str, None] = field(default_factory=dict)  # imports not allowed, in order
    ends: list[int] = field(default_factory=list)  # where each complete pickle ends
    problem: str = ""  # why the walk stopped before `count` pickles
    exhausted: bool = False  # the problem was running out of data


def _walk(data: bytes, count: int) -> _Walk:
    """Walk (never execute) the opcodes of the first `count` pickles in `data`."""
    walk = _Walk()
    stream = io.BytesIO(data)
    while len(walk.ends) < count:
        try:
            _walk_pickle(stream, data, walk.unsafe)
        except Exception as exc:  # pickletools raises ValueError, and others on odd input
            walk.problem = excerpt(str(exc)) if str(exc) else type(exc).__name__
            walk.exhausted = stream.tell() >= len(data)
            break
        walk.ends.append(stream.tell())
    return walk


def _walk_pickle(stream: io.BytesIO, data: bytes, unsafe: dict[str, None]) -> None:
    """Add to `unsafe` every import of the pickle at the stream's position not on the allowlist.

    Mirrors the unpickler's memo, and the strings on top of its stack, so a STACK_GLOBAL is
    resolved only from string constants pushed (or fetched from the memo) right before it.
    Imports it cannot name (a computed STACK_GLOBAL, EXT) count once the pickle ends: in random
    bytes that break off they are noise, and a broken pickle is refused anyway.
    """
    protocol = 0
    memo: dict[int, str | None] = {}
    strings: list[str] = []  # the strings on top of the stack, when the top holds strings
    unnamed: dict[str, None] = {}
    opcodes = pickletools.genops(stream)
    while True:
        at = stream.tell()
        try:
            step = next(opcodes, None)
        except Exception:
            if data[at : at + 1] in (b"c", b"i"):  # GLOBAL or INST lines pickletools cannot
                with suppress(ValueError):  # decode (not ASCII, or bad escapes) still import
                    _check_global(_line_pair(data, at + 1), protocol, unsafe)
            raise
        if step is None:
            unsafe.update(unnamed)
            return
        opcode, arg, _ = step
        name = opcode.name
        if name in _STRING_PUSHES:
            strings = [*strings[-1:], str(arg)]
            continue
        if name in _MEMO_PUTS or name == "MEMOIZE":
            memo[len(memo) if name == "MEMOIZE" else cast(int, arg)] = (
                strings[-1] if strings else None
            )
            continue
        if name in _MEMO_GETS:
            value = memo.get(cast(int, arg))
            strings = [*strings[-1:], value] if isinstance(value, str) else []
            continue
        if name in _STACK_NEUTRAL:
            continue
        if name == "PROTO":
            protocol = cast(int, arg)
        elif name in ("GLOBAL", "INST"):
            _check_global(_line_pair(data, at + 1), protocol, unsafe)
        elif name == "STACK_GLOBAL":
            if len(strings) == 2:
                _check_global((strings[0], strings[1]), protocol, unsafe)
            else:
                unnamed["a global whose name is computed while loading (STACK_GLOBAL)"] = None
        elif name.startswith("EXT"):
            unnamed[f"the copyreg extension {arg} ({name})"] = None
        strings = []


def _line_pair(data: bytes, at: int) -> tuple[str, str]:
    """The module and name lines of a GLOBAL or INST, decoded as the unpickler does (UTF-8;
    ValueError where it fails)."""
    first = data.index(b"\n", at)
    second = data.index(b"\n", first + 1)
    return data[at:first].decode("utf-8"), data[first + 1 : second].decode("utf-8")


def _check_global(pair: tuple[str, str], protocol: int, unsafe: dict[str, None]) -> None:
    module, name = pair
    if protocol < 3:  # pickle's fix_imports: Python 2 names, as the unpickler maps them
        module, name = NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module), name))
    if (module, name) not in _allowed():
        unsafe[excerpt(f"{module}.{name}")] = None


@cache
def _allowed() -> frozenset[tuple[str, str]]:
    return frozenset(
        (module, name) for module, names in catalog.pickle_globals().items() for name in names
    )


# --- findings -------------------------------------------------------------------------------


def _zip_refusal(exc: ZipError) -> _Refused:
    if isinstance(exc, ZipAmbiguous):
        return _Refused("PICKLE_AMBIGUOUS", str(exc))
    if isinstance(exc, ZipTooLarge):
        return _Refused("PICKLE_TOO_LARGE", str(exc))
    return _Refused("PICKLE_UNREADABLE", str(exc))


def _unsafe(imports: list[str]) -> _Refused:
    shown = ", ".join(imports[:MAX_NAMED])
    if len(imports) > MAX_NAMED:
        shown += f" and {len(imports) - MAX_NAMED} more"
    return _Refused(
        "PICKLE_UNSAFE",
        f"imports {shown}, not on modeldrop's allowlist of what torch.save writes for tensor "
        "weights: torch.load(weights_only=False) would import and may call what it names, which "
        "can run any code",
    )


def _refusal(name: str, refused: _Refused) -> Finding:
    ending, hint = _ENDINGS[refused.code]
    return error(refused.code, f"{name} {refused}{ending}", name, hint)


def _accepted(name: str, layout: str) -> Finding:
    """The PICKLE_WEIGHTS warning for pickle weights that import only allowlisted globals."""
    message = (
        f"{name} holds PyTorch pickle weights ({layout}) that import only what torch.save writes "
        "for tensors, so they are accepted; but pickle files can run code when loaded and "
        "safetensors is preferred."
    )
    return warning("PICKLE_WEIGHTS", message, name, _SAFETENSORS_HINT)
