"""Ranged, bounded reading of a zip archive (torch.save's format) through the Folder port.

The end records and central directory come from one bounded read of the file's tail, then single
members are read on demand; nothing else of the file is fetched. Every size is checked as an
integer before anything is read or allocated.

An archive that two zip readers could read differently is refused (`ZipAmbiguous`) rather than
read one way. The readers that matter are torch's (miniz, in PyTorchStreamReader) and Python's
zipfile; where they differ:

- miniz takes the last end-of-central-directory signature with 22 bytes after it (scanning about
  68 KiB back, ignoring the comment length), zipfile the last one whose comment fits: exactly one
  signature may appear in that window, and its comment must end the file;
- miniz follows the ZIP64 locator's pointer, zipfile reads the ZIP64 end record just before the
  locator: they must be the same 56-byte record, and each end-record field must equal its ZIP64
  value or hold the 0xFFFF... marker;
- zipfile shifts every offset by any gap between the central directory and the end records (for
  data prepended to an archive), miniz does not: the directory must end where the end records
  begin, and some member must start at offset 0, where the file's first local header is;
- miniz reads as many entries as the end record counts, zipfile as many as the directory's bytes
  hold: both must agree;
- names are looked up ASCII case-insensitively by miniz, cut at a NUL by zipfile, replaced by an
  Info-ZIP Unicode Path field by some readers: names must be unique ignoring ASCII case, hold no
  NUL, have no such field, and a local header must repeat its central name (and its method);
- two members may not share or overlap their bytes, nor overlap the directory.

Corrupt, truncated and unsupported archives (split, encrypted, compressed other than stored or
deflate) raise `ZipUnreadable`; ones over a bound raise `ZipTooLarge`. Messages say what was found
and read after the file's name.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from modeldrop.domain.findings import excerpt
from modeldrop.domain.folder import FileInfo, Folder

MAX_MEMBERS = 65_536
"""The most entries a central directory may list (torch.save writes about one per tensor)."""

MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
"""The most central-directory bytes read."""

EOCD_SEARCH_BYTES = 22 + 0xFFFF + 4096
"""How far back from the end readers look for the end record: a full comment, plus the 4 KiB
steps miniz scans in."""

TAIL_BYTES = EOCD_SEARCH_BYTES + 20 + 56
"""The one tail read: the search window plus the ZIP64 locator and end record before it."""

_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_END_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_END_SIG = b"PK\x06\x06"
_END = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_U16, _U32 = 0xFFFF, 0xFFFFFFFF
_STORED, _DEFLATED = 0, 8
_UTF8_NAME = 0x800
_UNICODE_PATH = 0x7075  # the Info-ZIP Unicode Path extra field
_UNSUPPORTED_FLAGS = 0x1 | 0x20 | 0x40  # encrypted, compressed patch data, strong encryption
_MAX_EXTRACT_VERSION = 63  # zipfile refuses members that need a later zip version
_LOCAL_EXTRA_GUESS = 128  # torch pads a local extra field to align the data to 64 bytes


class ZipError(Exception):
    """The archive was refused; the message says what was found (it follows the file's name)."""


class ZipUnreadable(ZipError):
    """Corrupt, truncated, or using zip features torch.save never writes."""


class ZipAmbiguous(ZipError):
    """Zip readers could read different members or bytes from the archive."""


class ZipTooLarge(ZipError):
    """Over one of the bounds on what is read."""


@dataclass(frozen=True)
class Member:
    """One central-directory entry, with its ZIP64 values applied."""

    raw_name: bytes
    name: str  # decoded as zipfile does: UTF-8 when flagged, else cp437
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    offset: int  # of its local header
    end: int  # where the next member's local header or the central directory begins

    @property
    def key(self) -> bytes:
        """The name as miniz compares it: ASCII case-insensitively."""
        return self.raw_name.lower()


class RangedFile:
    """Ranged reads of one file through a Folder, reusing the head and tail already fetched."""

    def __init__(self, folder: Folder, file: FileInfo) -> None:
        self.folder = folder
        self.name = file.name
        self.size = file.size
        self._windows: list[tuple[int, bytes]] = []

    def read(self, start: int, length: int, keep: bool = False) -> bytes:
        """`length` bytes from `start`, fewer only at the end of the file; `keep` caches them."""
        length = min(length, self.size - start)
        if length <= 0:
            return b""
        if self.size <= TAIL_BYTES:
            self.tail()  # one read serves the whole of a small file
        for at, window in self._windows:
            if at <= start and start + length <= at + len(window):
                return window[start - at : start - at + length]
        data = self.folder.read_range(self.name, start, length)
        self._check_length(data, length)
        if keep:
            self._windows.append((start, data))
        return data

    def tail(self) -> tuple[int, bytes]:
        """The last TAIL_BYTES of the file (all of it when shorter) and the offset they start at."""
        start = max(0, self.size - TAIL_BYTES)
        for at, window in self._windows:
            if at == start and at + len(window) == self.size:
                return at, window
        data = self.folder.read_tail(self.name, TAIL_BYTES)
        self._check_length(data, self.size - start)
        self._windows.append((start, data))
        return start, data

    def _check_length(self, data: bytes, length: int) -> None:
        if len(data) != length:
            raise ZipUnreadable(
                f"returned {len(data)} bytes where {length} were expected (it is not "
                f"{self.size} bytes long as listed; did it change while being read?)"
            )


class ZipArchive:
    """The members of one zip archive, found through its end records and central directory."""

    def __init__(self, file: RangedFile) -> None:
        self.file = file
        self.members = _read_directory(file)

    def read(self, member: Member, limit: int) -> bytes:
        """The uncompressed bytes of `member` (CRC-checked); ZipTooLarge past `limit` bytes."""
        if member.flags & _UNSUPPORTED_FLAGS:
            raise ZipUnreadable(f"holds {_show(member)} encrypted or as patch data")
        if member.method not in (_STORED, _DEFLATED):
            raise ZipUnreadable(
                f"stores {_show(member)} with zip compression method {member.method}; only "
                "stored (torch.save's) and deflate members are read"
            )
        if max(member.size, member.compressed_size) > limit:
            raise ZipTooLarge(
                f"has a member {_show(member)} of {member.size} bytes ({member.compressed_size} "
                f"compressed); modeldrop reads at most {limit} bytes of it"
            )
        data = self._member_data(member)
        out = data if member.method == _STORED else _inflate(data, member)
        if len(out) != member.size:
            raise ZipUnreadable(f"stores {_show(member)} with two different sizes")
        if zlib.crc32(out) != member.crc:
            raise ZipUnreadable(f"holds {_show(member)} whose CRC-32 does not match its bytes")
        return out

    def _member_data(self, member: Member) -> bytes:
        """The stored (maybe compressed) bytes of `member`, after its local header."""
        header = len(member.raw_name) + _LOCAL.size
        want = min(header + _LOCAL_EXTRA_GUESS + member.compressed_size, member.end - member.offset)
        raw = self.file.read(member.offset, want)
        if len(raw) < header or not raw.startswith(_LOCAL_SIG):
            raise ZipUnreadable(f"has no local header for {_show(member)} where its directory says")
        fields = _LOCAL.unpack_from(raw)
        flags, method, name_len, extra_len = fields[2], fields[3], fields[9], fields[10]
        if raw[_LOCAL.size : _LOCAL.size + name_len] != member.raw_name:
            raise ZipAmbiguous(
                f"names a member {_show(member)} in its directory but "
                f"{excerpt(raw[_LOCAL.size : _LOCAL.size + name_len])} in its local header"
            )
        if method != member.method or (flags ^ member.flags) & _UTF8_NAME:
            raise ZipAmbiguous(
                f"gives {_show(member)} a different compression or name encoding in its local "
                "header than in its directory"
            )
        start = _LOCAL.size + name_len + extra_len
        end = start + member.compressed_size
        if member.offset + end > member.end:
            raise ZipAmbiguous(f"has a member {_show(member)} that overlaps the next one")
        if end > len(raw):
            raw += self.file.read(member.offset + len(raw), end - len(raw))
        return raw[start:end]


def _read_directory(file: RangedFile) -> list[Member]:
    """The members the central directory lists, after every check in the module docstring."""
    count, size, offset = _end_records(file)
    if count > MAX_MEMBERS:
        raise ZipTooLarge(
            f"lists {count} zip members; modeldrop reads at most {MAX_MEMBERS} (torch.save "
            "writes about one per tensor)"
        )
    if size > MAX_DIRECTORY_BYTES:
        raise ZipTooLarge(
            f"has a zip central directory of {size} bytes; modeldrop reads at most "
            f"{MAX_DIRECTORY_BYTES // 2**20} MiB of it"
        )
    if size < count * _CENTRAL.size:
        raise ZipUnreadable(f"has a zip central directory too small for its {count} entries")
    directory = file.read(offset, size)
    return _check_layout(_parse_directory(directory, count), offset)


def _end_records(file: RangedFile) -> tuple[int, int, int]:
    """Entry count, size and offset of the central directory, from the (ZIP64) end records."""
    tail_at, tail = file.tail()
    window = tail[-EOCD_SEARCH_BYTES:]
    found = window.count(_END_SIG)
    if found != 1:
        if found == 0:
            raise ZipUnreadable(
                "starts like a zip archive but has no end-of-central-directory record "
                "(truncated or corrupt)"
            )
        raise ZipAmbiguous(
            f"has {found} end-of-central-directory signatures in its last "
            f"{EOCD_SEARCH_BYTES // 1024} KiB, and zip readers pick different ones"
        )
    at = tail.rfind(_END_SIG)
    if at + _END.size > len(tail):
        raise ZipUnreadable("has a truncated end-of-central-directory record")
    _, disk, directory_disk, disk_count, count, size, offset, comment = _END.unpack_from(tail, at)
    if at + _END.size + comment != len(tail):
        raise ZipAmbiguous(
            f"has {len(tail) - at - _END.size} bytes after its end-of-central-directory record, "
            f"whose comment length is {comment}"
        )
    records_at = tail_at + at
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == _ZIP64_LOCATOR_SIG:
        plain = (disk, directory_disk, disk_count, count, size, offset)
        disk, directory_disk, disk_count, count, size, offset = _zip64_end(
            tail, tail_at, locator_at, plain
        )
        records_at = tail_at + locator_at - _ZIP64_END.size
    if disk or directory_disk or disk_count != count:
        raise ZipUnreadable("is a multi-disk (split) zip archive, which torch.save never writes")
    if offset + size != records_at:
        raise ZipAmbiguous(
            f"has a central directory ({size} bytes at offset {offset}) that does not end where "
            f"its end records begin (offset {records_at}); zip readers place its members "
            "differently"
        )
    return count, size, offset


def _zip64_end(
    tail: bytes, tail_at: int, locator_at: int, plain: tuple[int, ...]
) -> tuple[int, ...]:
    """The ZIP64 end record's disk numbers, entry counts, directory size and offset."""
    _, locator_disk, pointer, disks = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
    if locator_disk != 0 or disks != 1:
        raise ZipUnreadable("is a multi-disk (split) zip archive, which torch.save never writes")
    at = locator_at - _ZIP64_END.size
    if at < 0 or tail[at : at + 4] != _ZIP64_END_SIG:
        raise ZipUnreadable("has a ZIP64 locator but no ZIP64 end record right before it")
    fields = _ZIP64_END.unpack_from(tail, at)
    if fields[1] != _ZIP64_END.size - 12 or pointer != tail_at + at:
        raise ZipAmbiguous(
            f"has a ZIP64 locator pointing at offset {pointer}, not at the 56-byte ZIP64 end "
            f"record right before it (offset {tail_at + at}), and zip readers follow one or "
            "the other"
        )
    values = fields[4:]
    markers = (_U16, _U16, _U16, _U16, _U32, _U32)
    for value, zip64_value, marker in zip(plain, values, markers, strict=True):
        if value not in (marker, zip64_value):
            raise ZipAmbiguous(
                "has an end-of-central-directory record that disagrees with its ZIP64 end "
                f"record ({value} against {zip64_value}), and zip readers use one or the other"
            )
    return values


def _parse_directory(directory: bytes, count: int) -> list[Member]:
    """Exactly `count` entries, which must fill the directory."""
    members = []
    at = 0
    for index in range(count):
        if at + _CENTRAL.size > len(directory) or directory[at : at + 4] != _CENTRAL_SIG:
            raise ZipUnreadable(
                f"has a zip central directory whose entry {index} of {count} is corrupt"
            )
        fields = _CENTRAL.unpack_from(directory, at)
        needed, flags, method, crc, compressed, size = fields[2], *fields[3:5], *fields[7:10]
        name_len, extra_len, comment_len, offset = *fields[10:13], fields[16]
        start = at + _CENTRAL.size
        at = start + name_len + extra_len + comment_len
        if at > len(directory):
            raise ZipUnreadable(f"has a zip central directory whose entry {index} is cut off")
        raw_name = directory[start : start + name_len]
        extra = directory[start + name_len : start + name_len + extra_len]
        size, compressed, offset = _extra_fields(extra, size, compressed, offset, raw_name)
        if needed > _MAX_EXTRACT_VERSION:
            raise ZipUnreadable(
                f"needs zip version {needed / 10} to read {excerpt(raw_name)}, which torch.save "
                "never writes"
            )
        members.append(
            Member(
                raw_name, _decode(raw_name, flags), flags, method, crc, compressed, size, offset, 0
            )
        )
    if at != len(directory):
        raise ZipAmbiguous(
            f"lists {count} entries in its end record but its central directory holds "
            f"{len(directory) - at} more bytes, and zip readers read one or the other"
        )
    return members


def _extra_fields(
    extra: bytes, size: int, compressed: int, offset: int, raw_name: bytes
) -> tuple[int, int, int]:
    """Size, compressed size and offset, the 0xFFFFFFFF ones from the ZIP64 extra field."""
    zip64: list[bytes] = []
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        if at + 4 + length > len(extra):
            raise ZipUnreadable(f"has a corrupt extra field for {excerpt(raw_name)}")
        if tag == 1:
            zip64.append(extra[at + 4 : at + 4 + length])
        if tag == _UNICODE_PATH:
            raise ZipAmbiguous(
                f"gives {excerpt(raw_name)} a second name in an Info-ZIP Unicode Path field, "
                "which some zip readers use instead"
            )
        at += 4 + length
    if len(zip64) > 1:
        raise ZipAmbiguous(f"has {len(zip64)} ZIP64 extra fields for {excerpt(raw_name)}")
    body = zip64[0] if zip64 else b""
    values = [size, compressed, offset]
    for index, value in enumerate(values):
        if value == _U32:
            if len(body) < 8:
                raise ZipUnreadable(f"lacks the ZIP64 sizes of {excerpt(raw_name)}")
            (values[index],) = struct.unpack_from("<Q", body)
            body = body[8:]
    return values[0], values[1], values[2]


def _decode(raw_name: bytes, flags: int) -> str:
    try:
        return raw_name.decode("utf-8" if flags & _UTF8_NAME else "cp437")
    except UnicodeDecodeError as exc:
        raise ZipUnreadable(f"has a member name that is not UTF-8: {excerpt(raw_name)}") from exc


def _check_layout(members: list[Member], directory_at: int) -> list[Member]:
    """The members with their `end` set, once names and byte ranges are known to be unambiguous."""
    names: set[bytes] = set()
    for member in members:
        if b"\0" in member.raw_name:
            raise ZipAmbiguous(
                f"has a member name holding a NUL byte, {excerpt(member.raw_name)}, which zip "
                "readers cut or keep"
            )
        if member.key in names:
            raise ZipAmbiguous(
                f"lists the member {_show(member)} twice (names compared ignoring case, as torch "
                "does), and zip readers pick different copies"
            )
        names.add(member.key)
    offsets = sorted({m.offset for m in members})
    if len(offsets) != len(members):
        raise ZipAmbiguous("has two members that share one local header")
    if offsets and offsets[0] != 0:
        raise ZipAmbiguous(
            "has a first local header (at offset 0) that its central directory does not list"
        )
    ends = dict(zip(offsets, [*offsets[1:], directory_at], strict=True))
    for member in members:
        if (
            member.offset + _LOCAL.size + len(member.raw_name) + member.compressed_size
            > ends[member.offset]
        ):
            raise ZipAmbiguous(
                f"has a member {_show(member)} that overlaps the next member or the directory"
            )
    return [replace(m, end=ends[m.offset]) for m in members]


def _inflate(data: bytes, member: Member) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, member.size + 1)
    except zlib.error as exc:
        raise ZipUnreadable(f"holds a corrupt deflate member {_show(member)} ({exc})") from exc
    if not inflater.eof:
        raise ZipUnreadable(f"holds a truncated or corrupt deflate member {_show(member)}")
    return out


def _show(member: Member) -> str:
    return excerpt(member.name)
