"""Zip reader: reads exactly what zipfile reads or refuses with its own errors, within bounds.

Also property tests of the pickle scanner: pickles of allowlisted data are accepted, any bytes
give exactly one finding, and any global off the allowlist is PICKLE_UNSAFE.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modeldrop import catalog
from modeldrop.domain.folder import FileInfo
from modeldrop.validation import zip_reader
from modeldrop.validation.zip_reader import (
    TAIL_BYTES,
    RangedFile,
    ZipAmbiguous,
    ZipArchive,
    ZipError,
    ZipTooLarge,
    ZipUnreadable,
)
from tests.fixtures.hostile_pickles import (
    HOSTILE_PICKLES,
    Entry,
    MemoryFolder,
    global_,
    pickle_of,
    scan_bytes,
    text,
    torch_zip,
    zip_archive,
)

FACTORIES = {name: build for name, build, _, _ in HOSTILE_PICKLES}
EOCD = b"PK\x05\x06"
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def open_zip(data: bytes, size: int | None = None) -> tuple[ZipArchive, MemoryFolder]:
    folder = MemoryFolder({"a.zip": data})
    file = RangedFile(folder, FileInfo("a.zip", len(data) if size is None else size))
    return ZipArchive(file), folder


def ours(data: bytes) -> list[tuple[str, bytes]]:
    """Every member's name and bytes, as the zip reader reads them."""
    archive, _ = open_zip(data)
    return [(m.name, archive.read(m, 1 << 20)) for m in archive.members]


def theirs(data: bytes) -> list[tuple[str, bytes]]:
    """Every member's name and bytes, as zipfile reads them."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def with_zipfile(members: list[tuple[str, bytes, int, bool]], comment: bytes = b"") -> bytes:
    """An archive zipfile writes: (name, data, compression, force_zip64) per member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, compression, force_zip64 in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            with archive.open(info, "w", force_zip64=force_zip64) as member:
                member.write(data)
        archive.comment = comment
    return buffer.getvalue()


NAMES = st.from_regex(r"[a-zA-Z0-9_.é-]{1,8}(/[a-zA-Z0-9_.-]{1,8}){0,2}", fullmatch=True)
MEMBERS = st.lists(
    st.tuples(
        NAMES,
        st.binary(max_size=3000),
        st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
        st.booleans(),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda member: member[0].lower(),
)
ARCHIVES = st.tuples(MEMBERS, st.binary(max_size=40))  # built in the test: zipfile is not pure


# --- what zipfile reads -----------------------------------------------------------------------


@PROPERTY
@given(ARCHIVES)
def test_well_formed_archives_read_as_zipfile_reads_them(archive: tuple) -> None:
    data = with_zipfile(*archive)
    assume(data.count(EOCD) == 1)  # a second signature anywhere in the tail is refused
    assert ours(data) == theirs(data)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.binary(min_size=1, max_size=10).map(lambda n: b"d/" + n), st.binary()),
        min_size=1,
        max_size=4,
        unique_by=lambda member: member[0].lower(),
    ),
    st.booleans(),
    st.booleans(),
)
def test_zip64_archives_read_as_zipfile_reads_them(
    members: list[tuple[bytes, bytes]], zip64: bool, deflate: bool
) -> None:
    assume(all(b"\0" not in name for name, _ in members))
    data = zip_archive([Entry(name, body, deflate) for name, body in members], zip64=zip64)
    assume(data.count(EOCD) == 1)
    assert ours(data) == theirs(data)


EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 10**5), st.integers(0, 255)),
        st.tuples(st.just("cut"), st.integers(0, 10**5), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, 10**5), st.integers(0, 255)),
    ),
    min_size=1,
    max_size=4,
)


def edited(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, value in edits:
        at %= len(out) + 1
        if kind == "set" and at < len(out):
            out[at] = value
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([value])
        if not out:
            break
    return bytes(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ARCHIVES, EDITS)
def test_corrupt_archives_read_as_zipfile_or_are_refused(
    archive: tuple, edits: list[tuple[str, int, int]]
) -> None:
    broken = edited(with_zipfile(*archive), edits)
    try:
        read = ours(broken)
    except ZipError:
        return
    assert read == theirs(broken)


# --- ambiguous, corrupt, too large ------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("zip_two_end_records", ZipAmbiguous),
        ("zip64_locator_points_elsewhere", ZipAmbiguous),
        ("zip64_disagrees_with_end_record", ZipAmbiguous),
        ("zip_duplicate_data_pkl", ZipAmbiguous),
        ("zip_case_duplicate_data_pkl", ZipAmbiguous),
        ("zip_local_name_differs", ZipAmbiguous),
        ("zip_count_hides_an_entry", ZipAmbiguous),
        ("zip_hidden_first_local_header", ZipAmbiguous),
        ("zip_name_with_nul", ZipAmbiguous),
        ("zip_200000_duplicate_members", ZipTooLarge),
    ],
)
def test_hostile_archives_raise_the_readers_own_errors(case: str, error: type[ZipError]) -> None:
    with pytest.raises(error):
        ours(FACTORIES[case]())


def test_member_count_is_bounded_before_the_directory_is_read() -> None:
    data = FACTORIES["zip_200000_duplicate_members"]()
    folder = MemoryFolder({"a.zip": data})
    with pytest.raises(ZipTooLarge, match="200000 zip members"):
        ZipArchive(RangedFile(folder, folder.info("a.zip")))
    assert folder.reads == 1 and folder.bytes_read == TAIL_BYTES


def test_directory_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zip_reader, "MAX_DIRECTORY_BYTES", 64)
    with pytest.raises(ZipTooLarge, match="central directory"):
        ours(zip_archive([Entry(b"a/" + bytes([65 + i]) * 20, b"") for i in range(3)]))


def test_member_size_is_bounded_before_it_is_read() -> None:
    archive, folder = open_zip(zip_archive([Entry(b"a/big", b"x" * 100_000, deflate=True)]))
    with pytest.raises(ZipTooLarge, match="100000 bytes"):
        archive.read(archive.members[0], 99_999)
    assert folder.reads == 1


def test_only_the_tail_and_the_wanted_member_are_read() -> None:
    data = zip_archive([Entry(b"a/small", b"s" * 100), Entry(b"a/big", b"\1" * 3_000_000)])
    archive, folder = open_zip(data)
    assert archive.read(archive.members[0], 1 << 20) == b"s" * 100
    assert folder.reads == 2 and folder.bytes_read <= TAIL_BYTES + 400


def test_a_small_archive_is_read_in_one_read() -> None:
    archive, folder = open_zip(zip_archive([Entry(b"a/x", b"x"), Entry(b"a/y", b"y" * 50)]))
    assert [archive.read(m, 100) for m in archive.members] == [b"x", b"y" * 50]
    assert folder.reads == 1


def test_a_comment_that_ends_the_file_is_fine_and_anything_after_it_is_not() -> None:
    data = with_zipfile([("a/x", b"x", zipfile.ZIP_STORED, False)], comment=b"hello")
    assert ours(data) == theirs(data) == [("a/x", b"x")]
    with pytest.raises(ZipAmbiguous, match="bytes after its end-of-central-directory"):
        ours(data + b"trailer")


def test_data_before_the_archive_is_ambiguous() -> None:
    data = b"junk" + with_zipfile([("a/x", b"x", zipfile.ZIP_STORED, False)])
    assert theirs(data) == [("a/x", b"x")]  # zipfile shifts every offset; miniz does not
    with pytest.raises(ZipAmbiguous, match="does not end where its end records begin"):
        ours(data)


def test_overlapping_members_are_ambiguous() -> None:
    data = bytearray(zip_archive([Entry(b"a/x", b"x" * 10), Entry(b"a/y", b"y" * 10)]))
    central = data.index(b"PK\x01\x02")
    data[central + 20 : central + 24] = struct.pack("<L", 40)  # a/x's compressed size
    with pytest.raises(ZipAmbiguous, match="overlaps"):
        ours(bytes(data))


@pytest.mark.parametrize(
    ("extra", "error", "words"),
    [
        (struct.pack("<2H", 0x7075, 5) + b"\1abcd", ZipAmbiguous, "Unicode Path"),
        (struct.pack("<2HQ", 1, 8, 1) * 2, ZipAmbiguous, "2 ZIP64 extra fields"),
        (struct.pack("<2H", 9, 50), ZipUnreadable, "corrupt extra field"),
    ],
)
def test_extra_fields_readers_disagree_on(extra: bytes, error: type[ZipError], words: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("a/x")
        info.extra = extra
        archive.writestr(info, b"x")
    with pytest.raises(error, match=words):
        ours(buffer.getvalue())


def test_crc_mismatch_is_unreadable() -> None:
    data = bytearray(zip_archive([Entry(b"a/x", b"payload")]))
    data[30 + 3] ^= 1  # a byte of the stored data
    with pytest.raises(ZipUnreadable, match="CRC-32"):
        ours(bytes(data))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [(8, 1, "encrypted"), (10, 12, "compression method 12")],  # central flags, method
)
def test_unsupported_members_are_unreadable(field: int, value: int, words: str) -> None:
    data = bytearray(zip_archive([Entry(b"a/x", b"x")]))
    at = data.index(b"PK\x01\x02") + field
    data[at : at + 2] = struct.pack("<H", value)
    with pytest.raises(ZipUnreadable, match=words):
        ours(bytes(data))


def test_a_file_shorter_than_listed_is_unreadable() -> None:
    data = zip_archive([Entry(b"a/x", b"x")])
    with pytest.raises(ZipUnreadable, match="did it change"):
        open_zip(data, size=len(data) + 10)


def test_no_end_record_is_unreadable() -> None:
    with pytest.raises(ZipUnreadable, match="no end-of-central-directory"):
        ours(b"PK\x03\x04" + b"\0" * 100)


# --- the pickle scanner on generated input ----------------------------------------------------

ALLOWED_DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(min_size=1, max_size=20)  # protocol 2 writes b"" as builtins.bytes(), not allowed
    | st.complex_numbers(allow_nan=False)
    | st.binary(max_size=10).map(bytearray),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4).map(OrderedDict)
        | st.sets(st.integers(), max_size=4)
    ),
    max_leaves=12,
)


@PROPERTY
@given(ALLOWED_DATA, st.integers(2, 5))
def test_pickles_of_allowlisted_data_are_accepted(value: Any, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    assume(EOCD not in data)  # a second end-record signature in a small archive is refused
    findings, _ = scan_bytes(torch_zip(data))
    assert [f.code for f in findings] == ["PICKLE_WEIGHTS"], findings


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b),
        st.binary(max_size=512).map(lambda b: b"\x80\x02" + b),
    )
)
def test_arbitrary_bytes_only_give_one_finding(data: bytes) -> None:
    findings, _ = scan_bytes(data)
    assert len(findings) == 1
    assert findings[0].code in {code for _, _, code, _ in HOSTILE_PICKLES} | {
        "PICKLE_UNREADABLE",
        "PICKLE_WEIGHTS",
    }


LINE = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=20)
ALLOWED = {(module, name) for module, names in catalog.pickle_globals().items() for name in names}


def resolved(module: str, name: str, protocol: int) -> tuple[str, str]:
    """The global the unpickler imports for `module name` (fix_imports below protocol 3)."""
    if protocol >= 3:
        return module, name
    return NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module), name))


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # pickletools
@PROPERTY
@given(LINE, LINE, st.sampled_from([0, 2, 3, 4]), st.booleans(), st.booleans())
def test_any_global_off_the_allowlist_is_unsafe(
    module: str, name: str, protocol: int, stacked: bool, in_zip: bool
) -> None:
    assume(resolved(module, name, protocol) not in ALLOWED)
    stacked = stacked and protocol >= 4
    push = text(module) + text(name) + b"\x93" if stacked else global_(module, name)
    data = pickle_of(push, b")R", protocol=protocol) if protocol else push + b")R."
    findings, _ = scan_bytes(torch_zip(data) if in_zip else data)
    assert [f.code for f in findings] == ["PICKLE_UNSAFE"], findings
