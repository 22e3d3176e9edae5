"""Pickle weights scanner: real torch.save files, malicious pickles, corrupt files, read bounds."""

from __future__ import annotations

import builtins
import os
import pickle
import struct
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.domain.findings import Finding, Severity
from modeldrop.errors import AccessError
from modeldrop.validation.folder import FileInfo
from modeldrop.validation.pickle_scan import MAX_PICKLE_BYTES, scan_pickle_weights

CODES = {"PICKLE_UNSAFE", "PICKLE_WEIGHTS", "PICKLE_UNREADABLE", "PICKLE_TOO_LARGE"}
SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux


class Evil:
    """Pickles as a call to os.system; these tests pickle it but never unpickle anything."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class EvilEval:
    def __reduce__(self):
        return (builtins.eval, ("1 + 1",))


def state_dict(numel: int = 16) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict(weight=torch.zeros(numel), bias=torch.ones(3, dtype=torch.bfloat16))


def torch_file(path: Path, obj: object, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def scan(path: Path) -> tuple[list[Finding], LocalFolder]:
    folder = LocalFolder(path.parent)
    info = next(f for f in folder.list_files() if f.name == path.name)
    return scan_pickle_weights(folder, info), folder


def scan_bytes(directory: Path, data: bytes, name: str = "pytorch_model.bin") -> list[Finding]:
    path = directory / name
    path.write_bytes(data)
    return scan(path)[0]


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def torch_like_zip(path: Path, members: dict[str, bytes], deflate: tuple[str, ...] = ()) -> Path:
    """A zip laid out like torch.save's: stored members under "<archive>/"."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)
    return path


def zip64_archive(members: dict[str, bytes]) -> bytes:
    """A stored zip whose central directory keeps sizes and offsets in ZIP64 extra fields."""
    out = bytearray()
    central = bytearray()
    for name, data in members.items():
        raw, offset, crc = name.encode(), len(out), zlib.crc32(data)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, len(data), len(data), len(raw), 0
        )
        out += raw + data
        extra = struct.pack("<2H3Q", 1, 24, len(data), len(data), offset)
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
            len(raw), len(extra), 0, 0, 0, 0, 0xFFFFFFFF,
        )  # fmt: skip
        central += raw + extra
    cd_offset = len(out)
    out += central
    zip64_at = len(out)
    count = len(members)
    out += struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), cd_offset
    )
    out += struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


@pytest.fixture
def real_pkl(tmp_path: Path) -> bytes:
    """The data.pkl torch.save writes for a small state dict."""
    path = torch_file(tmp_path / "source.bin", state_dict())
    with zipfile.ZipFile(path) as archive:
        return archive.read("source/data.pkl")


# --- safe weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_real_torch_save_is_accepted_with_a_warning(tmp_path: Path, legacy: bool) -> None:
    findings, _ = scan(torch_file(tmp_path / "pytorch_model.bin", state_dict(), legacy))
    assert codes(findings) == ["PICKLE_WEIGHTS"]
    finding = findings[0]
    assert finding.severity is Severity.WARNING
    assert finding.file == "pytorch_model.bin"
    assert "pytorch_model.bin" in finding.message and "safetensors" in finding.message
    assert "legacy" in finding.message if legacy else "zip format" in finding.message
    assert "save_pretrained" in finding.hint and "safe_serialization=True" in finding.hint


def test_unknown_but_not_dangerous_import_is_named_in_the_warning(tmp_path: Path) -> None:
    obj = {"p": torch.nn.Parameter(torch.zeros(2))}
    findings, _ = scan(torch_file(tmp_path / "pytorch_model.bin", obj))
    assert codes(findings) == ["PICKLE_WEIGHTS"]
    assert "torch._utils._rebuild_parameter" in findings[0].message


def test_deflate_compressed_data_pkl_is_scanned(tmp_path: Path, real_pkl: bytes) -> None:
    members = {"archive/data.pkl": real_pkl, "archive/data/0": b"\0" * 64}
    path = torch_like_zip(tmp_path / "m.bin", members, deflate=("archive/data.pkl",))
    assert codes(scan(path)[0]) == ["PICKLE_WEIGHTS"]


def test_zip64_extra_fields_are_followed(tmp_path: Path, real_pkl: bytes) -> None:
    data = zip64_archive({"archive/data/0": b"\1" * 4096, "archive/data.pkl": real_pkl})
    assert codes(scan_bytes(tmp_path, data)) == ["PICKLE_WEIGHTS"]
    evil = zip64_archive({"archive/data/0": b"\1" * 64, "archive/data.pkl": pickle.dumps(Evil())})
    assert codes(scan_bytes(tmp_path, evil)) == ["PICKLE_UNSAFE"]


# --- unsafe pickles ---------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_of_a_malicious_object_is_unsafe(tmp_path: Path, legacy: bool) -> None:
    obj = {"weight": torch.zeros(4), "payload": Evil()}
    findings, _ = scan(torch_file(tmp_path / "pytorch_model.bin", obj, legacy))
    assert codes(findings) == ["PICKLE_UNSAFE"]
    finding = findings[0]
    assert finding.severity is Severity.ERROR
    assert SYSTEM in finding.message and "pytorch_model.bin" in finding.message
    assert "Do not load this file" in finding.hint
    assert "safetensors.torch.save_file" in finding.hint
    assert "safe_serialization=True" in finding.hint


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_data_pkl_in_a_torch_like_zip_is_unsafe(tmp_path: Path, protocol: int) -> None:
    members = {
        "archive/data.pkl": pickle.dumps(Evil(), protocol=protocol),
        "archive/data/0": b"\0" * 1024,
        "archive/version": b"3\n",
    }
    findings, _ = scan(torch_like_zip(tmp_path / "m.bin", members))
    assert codes(findings) == ["PICKLE_UNSAFE"]
    assert SYSTEM in findings[0].message


def test_malicious_deflated_member_is_unsafe(tmp_path: Path) -> None:
    members = {"archive/data.pkl": pickle.dumps([EvilEval(), Evil()])}
    path = torch_like_zip(tmp_path / "m.bin", members, deflate=("archive/data.pkl",))
    findings, _ = scan(path)
    assert codes(findings) == ["PICKLE_UNSAFE"]
    assert "builtins.eval" in findings[0].message and SYSTEM in findings[0].message


def test_any_pkl_member_is_scanned(tmp_path: Path, real_pkl: bytes) -> None:
    members = {"archive/data.pkl": real_pkl, "archive/extra/constants.pkl": pickle.dumps(Evil())}
    assert codes(scan(torch_like_zip(tmp_path / "m.bin", members))[0]) == ["PICKLE_UNSAFE"]


def test_plain_malicious_pickle_file_is_unsafe(tmp_path: Path) -> None:
    assert codes(scan_bytes(tmp_path, pickle.dumps(Evil()))) == ["PICKLE_UNSAFE"]
    assert codes(scan_bytes(tmp_path, pickle.dumps(Evil(), protocol=0))) == ["PICKLE_UNSAFE"]


def test_unsafe_import_wins_over_a_broken_legacy_stream(tmp_path: Path) -> None:
    data = pickle.dumps(Evil())[:-1]  # no STOP: torch.load would still run os.system first
    assert codes(scan_bytes(tmp_path, data)) == ["PICKLE_UNSAFE"]


# --- unreadable and too large -----------------------------------------------------------------


def assert_unreadable(findings: list[Finding], *words: str) -> None:
    assert codes(findings) == ["PICKLE_UNREADABLE"], findings
    assert findings[0].severity is Severity.ERROR
    assert "torch.save" in findings[0].message and findings[0].hint
    for word in words:
        assert word in findings[0].message


def test_empty_file(tmp_path: Path) -> None:
    assert_unreadable(scan_bytes(tmp_path, b""), "empty")


def test_random_bytes(tmp_path: Path) -> None:
    data = bytes(range(7, 256)) * 40
    assert_unreadable(scan_bytes(tmp_path, data), "neither a zip archive nor a pickle")


def test_truncated_zip_has_no_end_record(tmp_path: Path) -> None:
    data = torch_file(tmp_path / "full.bin", state_dict(4096)).read_bytes()
    assert_unreadable(scan_bytes(tmp_path, data[: len(data) // 2]), "end-of-central-directory")


def test_corrupt_central_directory(tmp_path: Path) -> None:
    data = torch_file(tmp_path / "full.bin", state_dict()).read_bytes()
    at = data.index(b"PK\x01\x02")
    broken = data[:at] + b"XXXX" + data[at + 4 :]
    assert_unreadable(scan_bytes(tmp_path, broken), "central directory")


def test_zip_without_pkl_member(tmp_path: Path) -> None:
    path = torch_like_zip(tmp_path / "m.bin", {"archive/data/0": b"\0" * 16})
    assert_unreadable(scan(path)[0], ".pkl")


def test_pkl_member_that_is_not_a_pickle(tmp_path: Path) -> None:
    path = torch_like_zip(tmp_path / "m.bin", {"archive/data.pkl": b"definitely not a pickle"})
    assert_unreadable(scan(path)[0], "archive/data.pkl", "not a valid pickle")


def test_member_cut_off_by_a_truncated_file(tmp_path: Path, real_pkl: bytes) -> None:
    data = zip64_archive({"archive/data.pkl": real_pkl})
    # keep the end records but drop the middle of the member: offsets now point past the data
    at = data.index(b"PK\x01\x02")
    broken = data[:40] + data[at:]
    assert codes(scan_bytes(tmp_path, broken)) == ["PICKLE_UNREADABLE"]


def test_corrupt_deflate_member(tmp_path: Path, real_pkl: bytes) -> None:
    path = torch_like_zip(tmp_path / "m.bin", {"archive/data.pkl": real_pkl}, ("archive/data.pkl",))
    data = bytearray(path.read_bytes())
    start = 30 + len("archive/data.pkl")
    data[start : start + 8] = b"\xff" * 8
    assert_unreadable(scan_bytes(tmp_path, bytes(data)), "deflate")


def test_truncated_legacy_file(tmp_path: Path) -> None:
    data = torch_file(tmp_path / "full.bin", state_dict(), legacy=True).read_bytes()
    at = data.index(b"collections")  # inside the object pickle
    assert_unreadable(scan_bytes(tmp_path, data[: at + 20]), "pickle 4", "truncated or corrupt")


def test_pickle_without_torch_magic_number(tmp_path: Path) -> None:
    data = b"".join(pickle.dumps(x, protocol=2) for x in (1, 2, {}, [1, 2], ["k"]))
    assert_unreadable(scan_bytes(tmp_path, data), "magic number")


def test_legacy_pickle_not_ending_within_the_prefix(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    with open(path, "wb") as handle:  # BINBYTES8 claiming more bytes than the 64 MiB read
        handle.write(b"\x80\x04\x8e" + struct.pack("<Q", 2 * MAX_PICKLE_BYTES))
        handle.truncate(MAX_PICKLE_BYTES + 4096)  # sparse
    findings, folder = scan(path)
    assert_unreadable(findings, "does not end within the first 64 MiB")
    assert folder.bytes_read <= MAX_PICKLE_BYTES


def test_pickle_member_too_large(tmp_path: Path) -> None:
    big = b"\x80\x02" + b"N" * (MAX_PICKLE_BYTES + 1) + b"."
    path = torch_like_zip(tmp_path / "m.bin", {"archive/data.pkl": big}, ("archive/data.pkl",))
    findings, folder = scan(path)
    assert codes(findings) == ["PICKLE_TOO_LARGE"]
    assert "archive/data.pkl" in findings[0].message and "64 MiB" in findings[0].message
    assert folder.bytes_read < 200_000


def test_missing_file_raises_access_error(tmp_path: Path) -> None:
    with pytest.raises(AccessError):
        scan_pickle_weights(LocalFolder(tmp_path), FileInfo("gone.bin", 100_000))


# --- bounded reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_bytes_read_do_not_grow_with_tensor_data(tmp_path: Path, legacy: bool) -> None:
    read = []
    for numel in (250_000, 12_500_000):  # 1 MB and 50 MB of float32
        path = torch_file(tmp_path / f"w{numel}.bin", state_dict(numel), legacy)
        findings, folder = scan(path)
        assert codes(findings) == ["PICKLE_WEIGHTS"]
        read.append(folder.bytes_read)
        assert folder.reads <= 3
    assert max(read) <= 70 * 1024
    assert abs(read[0] - read[1]) <= 64


# --- never raises -----------------------------------------------------------------------------


def _scan_in_tempdir(data: bytes) -> list[Finding]:
    with tempfile.TemporaryDirectory() as directory:
        findings = scan_bytes(Path(directory), data)
    assert len(findings) == 1 and findings[0].code in CODES
    return findings


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b))
)
def test_arbitrary_bytes_only_give_findings(data: bytes) -> None:
    _scan_in_tempdir(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512).map(lambda b: b"\x80\x02" + b))
def test_arbitrary_pickle_like_bytes_only_give_findings(data: bytes) -> None:
    _scan_in_tempdir(data)


_SAMPLES: dict[bool, bytes] = {}


def _sample(legacy: bool) -> bytes:
    if legacy not in _SAMPLES:
        with tempfile.TemporaryDirectory() as directory:
            path = torch_file(Path(directory) / "s.bin", state_dict(), legacy)
            _SAMPLES[legacy] = path.read_bytes()
    return _SAMPLES[legacy]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_corrupted_torch_files_only_give_findings(legacy: bool, edits: list) -> None:
    data = bytearray(_sample(legacy))
    for at, value in edits:
        data[at % len(data)] = value
    _scan_in_tempdir(bytes(data))
