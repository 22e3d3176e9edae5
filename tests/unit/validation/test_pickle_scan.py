"""Pickle weights scanner: hostile payloads (proved to run code), real torch.save files, bounds."""

from __future__ import annotations

import importlib
import io
import os
import pickle
import subprocess
import sys
import time
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldrop import catalog
from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.domain.findings import Finding, Severity
from modeldrop.domain.folder import FileInfo
from modeldrop.errors import AccessError
from modeldrop.validation.pickle_scan import MAX_PICKLE_BYTES, scan_pickle_weights
from modeldrop.validation.zip_reader import TAIL_BYTES
from tests.fixtures.hostile_pickles import (
    HOSTILE_PICKLES,
    MARKER,
    Entry,
    call,
    global_,
    pickle_of,
    scan_bytes,
    torch_zip,
    zip_archive,
)

CODES = {code for _, _, code, _ in HOSTILE_PICKLES} | {"PICKLE_WEIGHTS", "PICKLE_UNREADABLE"}
SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux
RUNS_CODE = [name for name, _, _, runs in HOSTILE_PICKLES if runs]
FACTORIES = {name: build for name, build, _, _ in HOSTILE_PICKLES}


class Evil:
    """Pickles as a call to os.system; these tests pickle it but never unpickle anything."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def torch() -> ModuleType:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        pytest.skip(f"torch is not installed: {exc} (pip install -e '.[dev]' brings it)")


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def saved(torch: ModuleType, obj: object, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def state_dict(torch: ModuleType, numel: int = 16) -> OrderedDict[str, Any]:
    """A small state dict: float32, bf16 and fp16 tensors, a Parameter, in an OrderedDict."""
    return OrderedDict(
        weight=torch.zeros(numel),
        bias=torch.ones(3, dtype=torch.bfloat16),
        scale=torch.ones(2, dtype=torch.float16),
        param=torch.nn.Parameter(torch.zeros(2)),
    )


@pytest.fixture(scope="module")
def real_pkl(torch: ModuleType) -> bytes:
    """The data.pkl torch.save writes for a small state dict."""
    with zipfile.ZipFile(io.BytesIO(saved(torch, state_dict(torch)))) as archive:
        return archive.read("archive/data.pkl")


# --- hostile payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "build", "code", "runs_code"), HOSTILE_PICKLES, ids=[row[0] for row in HOSTILE_PICKLES]
)
def test_hostile_payload_is_refused(case: str, build: Any, code: str, runs_code: bool) -> None:
    data = build()
    findings, folder = scan_bytes(data)
    assert codes(findings) == [code], findings
    finding = findings[0]
    assert finding.severity is Severity.ERROR and finding.file == "pytorch_model.bin"
    assert finding.message.startswith("pytorch_model.bin ") and len(finding.message) < 1200
    assert "safetensors" in finding.hint
    assert folder.bytes_read <= min(len(data), MAX_PICKLE_BYTES + TAIL_BYTES)
    assert folder.reads <= 8


def test_the_200000_member_directory_is_refused_after_a_few_reads() -> None:
    findings, folder = scan_bytes(FACTORIES["zip_200000_duplicate_members"]())
    assert codes(findings) == ["PICKLE_TOO_LARGE"]
    assert "200000" in findings[0].message
    assert folder.reads <= 2 and folder.bytes_read <= 512 + TAIL_BYTES


def test_hostile_payloads_really_run_code(torch: ModuleType, tmp_path: Path) -> None:
    """Loads every case with torch.load(weights_only=False) in one subprocess: exactly the
    cases flagged as running code create their marker file."""
    directories = []
    for name, build, _, _ in HOSTILE_PICKLES:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "pytorch_model.bin").write_bytes(build())
        directories.append(str(directory))
    loader = (
        "import os, sys, torch\n"
        "for directory in sys.argv[1:]:\n"
        "    os.chdir(directory)\n"
        "    try:\n"
        "        torch.load('pytorch_model.bin', weights_only=False)\n"
        "    except BaseException:\n"  # payloads break the load after they ran
        "        pass\n"
    )
    subprocess.run([sys.executable, "-c", loader, *directories], check=True, timeout=300)
    deadline = time.monotonic() + 10  # subprocess.Popen's child touches its marker on its own
    while time.monotonic() < deadline and not all(
        (tmp_path / name / MARKER).exists() for name in RUNS_CODE
    ):
        time.sleep(0.1)
    ran = [name for name, *_ in HOSTILE_PICKLES if (tmp_path / name / MARKER).exists()]
    assert ran == RUNS_CODE


def test_unsafe_finding_names_the_imports_and_says_what_to_do() -> None:
    findings, _ = scan_bytes(FACTORIES["import_vars_getitem"]())
    message, hint = findings[0].message, findings[0].hint
    for name in ("builtins.__import__", "builtins.vars", "_operator.getitem"):
        assert name in message
    assert "allowlist" in message and "torch.load(weights_only=False)" in message
    assert "Do not load this file" in hint and "safe_serialization=True" in hint


def test_unsafe_imports_are_capped_and_each_cut_short() -> None:
    long_name = "x" * 5000
    imports = [global_(f"evil{i}", long_name) + b"0" for i in range(12)]
    findings, _ = scan_bytes(pickle_of(*imports, b"N"))
    message = findings[0].message
    assert codes(findings) == ["PICKLE_UNSAFE"]
    assert "evil0." in message and "evil4." in message and "evil5." not in message
    assert "and 7 more" in message and len(message) < 2000


def test_ambiguous_finding_says_why_and_what_to_do() -> None:
    findings, _ = scan_bytes(FACTORIES["zip_two_end_records"]())
    finding = findings[0]
    assert (
        "2 end-of-central-directory" in finding.message and "rather than guess" in finding.message
    )
    assert "Do not load this file with torch.load" in finding.hint


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_data_pkl_in_a_torch_like_zip_is_unsafe(protocol: int) -> None:
    findings, _ = scan_bytes(torch_zip(pickle.dumps(Evil(), protocol=protocol)))
    assert codes(findings) == ["PICKLE_UNSAFE"]
    assert SYSTEM in findings[0].message


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_of_a_malicious_object_is_unsafe(torch: ModuleType, legacy: bool) -> None:
    findings, _ = scan_bytes(saved(torch, {"weight": torch.zeros(4), "payload": Evil()}, legacy))
    assert codes(findings) == ["PICKLE_UNSAFE"]
    assert SYSTEM in findings[0].message


def test_every_pkl_member_is_scanned_whatever_its_case(real_pkl: bytes) -> None:
    for name in (b"archive/extra/constants.pkl", b"archive/x.PkL"):
        members = [Entry(b"archive/data.pkl", real_pkl), Entry(name, pickle.dumps(Evil()))]
        assert codes(scan_bytes(zip_archive(members))[0]) == ["PICKLE_UNSAFE"]


def test_unsafe_import_wins_over_a_broken_legacy_stream() -> None:
    data = pickle.dumps(Evil())[:-1]  # no STOP: torch.load would still run os.system first
    assert codes(scan_bytes(data)[0]) == ["PICKLE_UNSAFE"]


def test_stack_global_trusts_only_memo_entries_it_followed() -> None:
    allowed = b"\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93)R"  # memo 0, 1
    assert codes(scan_bytes(torch_zip(pickle_of(allowed, protocol=4)))[0]) == ["PICKLE_WEIGHTS"]
    overwritten = (
        b"\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94"  # memo 0, 1
        b"\x8c\x02os\x8c\x06system0"  # push 'os' and 'system', POP: 'os' is on top
        b"q\x01"  # BINPUT 1 overwrites 'OrderedDict' with whatever is on top
        b"0h\x00h\x01\x93)R"  # so this is collections.os, not collections.OrderedDict
    )
    findings, _ = scan_bytes(torch_zip(pickle_of(overwritten, protocol=4)))
    assert codes(findings) == ["PICKLE_UNSAFE"] and "computed" in findings[0].message


# --- real weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_real_torch_save_is_accepted_with_a_warning(
    torch: ModuleType, tmp_path: Path, legacy: bool
) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save(state_dict(torch), path, _use_new_zipfile_serialization=not legacy)
    folder = LocalFolder(tmp_path)
    findings = scan_pickle_weights(folder, folder.list_files()[0])
    assert codes(findings) == ["PICKLE_WEIGHTS"]
    finding = findings[0]
    assert finding.severity is Severity.WARNING and finding.file == "pytorch_model.bin"
    assert "pytorch_model.bin" in finding.message and "safetensors" in finding.message
    assert "legacy" in finding.message if legacy else "zip format" in finding.message
    assert "save_pretrained" in finding.hint and "safe_serialization=True" in finding.hint


@pytest.mark.parametrize("legacy", [False, True])
def test_everything_torch_save_writes_for_weights_is_accepted(
    torch: ModuleType, legacy: bool
) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    tagged = torch.zeros(2)
    tagged.note = "kept"  # a tensor with attributes: torch._tensor._rebuild_from_type_v2
    dtypes = [torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.int8, torch.bool]
    weights = {
        "module": module.state_dict(),  # an OrderedDict with _metadata
        "dtypes": {str(dtype): torch.zeros(2, dtype=dtype) for dtype in dtypes},
        "frozen": torch.nn.Parameter(torch.zeros(2), requires_grad=False),
        "view": torch.zeros(4, 4).t()[1:],
        "meta": torch.zeros(3, device="meta"),
        "sparse": torch.zeros(2, 2).to_sparse(),
        "tagged": tagged,
        "extras": {"size": torch.Size([1, 2]), "device": torch.device("cpu"), "b": b"x", "s": {1}},
    }
    assert codes(scan_bytes(saved(torch, weights, legacy))[0]) == ["PICKLE_WEIGHTS"]


def test_deflate_compressed_data_pkl_is_accepted(real_pkl: bytes) -> None:
    entries = [Entry(b"archive/data.pkl", real_pkl, deflate=True), Entry(b"archive/data/0", b"0")]
    assert codes(scan_bytes(zip_archive(entries))[0]) == ["PICKLE_WEIGHTS"]


def test_zip64_archive_is_accepted(real_pkl: bytes) -> None:
    assert codes(scan_bytes(torch_zip(real_pkl, zip64=True))[0]) == ["PICKLE_WEIGHTS"]


def test_python2_names_are_resolved_like_the_unpickler(real_pkl: bytes) -> None:
    legacy_set = pickle_of(call(global_("__builtin__", "set"), b"]"))  # builtins.set
    assert codes(scan_bytes(torch_zip(legacy_set))[0]) == ["PICKLE_WEIGHTS"]
    protocol3 = pickle_of(call(global_("__builtin__", "set"), b"]"), protocol=3)  # not renamed
    assert codes(scan_bytes(torch_zip(protocol3))[0]) == ["PICKLE_UNSAFE"]


def test_the_allowlist_is_torchs_and_not_renamed_by_pickle(torch: ModuleType) -> None:
    unpickler = importlib.import_module("torch._weights_only_unpickler")
    allowed = unpickler._get_allowed_globals()
    for module, names in catalog.pickle_globals().items():
        assert module not in IMPORT_MAPPING
        for name in names:
            assert f"{module}.{name}" in allowed
            assert (module, name) not in NAME_MAPPING
            assert getattr(importlib.import_module(module), name) is not None
    assert "description" in catalog.load("pickle_globals.json")
    assert "_weights_only_unpickler" in catalog.load("pickle_globals.json")["source"]


# --- unreadable and too large -----------------------------------------------------------------


def assert_refused(findings: list[Finding], code: str, *words: str) -> None:
    assert codes(findings) == [code], findings
    assert findings[0].severity is Severity.ERROR and findings[0].hint
    for word in words:
        assert word in findings[0].message


def test_empty_file() -> None:
    assert_refused(scan_bytes(b"")[0], "PICKLE_UNREADABLE", "empty", "torch.save")


def test_random_bytes() -> None:
    data = bytes(range(7, 256)) * 40
    assert_refused(scan_bytes(data)[0], "PICKLE_UNREADABLE", "neither a zip archive nor a pickle")


def test_truncated_zip_has_no_end_record(torch: ModuleType) -> None:
    data = saved(torch, state_dict(torch, 4096))
    assert_refused(scan_bytes(data[: len(data) // 2])[0], "PICKLE_UNREADABLE", "end-of-central")


def test_corrupt_central_directory(torch: ModuleType) -> None:
    data = saved(torch, state_dict(torch))
    at = data.index(b"PK\x01\x02")
    broken = data[:at] + b"XXXX" + data[at + 4 :]
    assert_refused(scan_bytes(broken)[0], "PICKLE_UNREADABLE", "central directory")


def test_zip_without_data_pkl() -> None:
    findings, _ = scan_bytes(zip_archive([Entry(b"archive/data/0", b"\0" * 16)]))
    assert_refused(findings, "PICKLE_UNREADABLE", "data.pkl")


def test_pkl_member_that_is_not_a_pickle() -> None:
    findings, _ = scan_bytes(torch_zip(b"definitely not a pickle"))
    assert_refused(findings, "PICKLE_UNREADABLE", "archive/data.pkl", "not a valid pickle")


def test_bytes_after_the_pickle_in_a_member(real_pkl: bytes) -> None:
    findings, _ = scan_bytes(torch_zip(real_pkl + b"junk"))
    assert_refused(findings, "PICKLE_UNREADABLE", "4 bytes after its pickle")


def test_corrupt_deflate_member(real_pkl: bytes) -> None:
    data = bytearray(zip_archive([Entry(b"archive/data.pkl", real_pkl, deflate=True)]))
    start = 30 + len("archive/data.pkl")
    data[start : start + 8] = b"\xff" * 8
    assert_refused(scan_bytes(bytes(data))[0], "PICKLE_UNREADABLE", "deflate")


def test_truncated_legacy_file(torch: ModuleType) -> None:
    data = saved(torch, state_dict(torch), legacy=True)
    at = data.index(b"collections")  # inside the object pickle
    findings, _ = scan_bytes(data[: at + 20])
    assert_refused(findings, "PICKLE_UNREADABLE", "pickle 4", "truncated or corrupt")


def test_pickle_without_torch_magic_number() -> None:
    pickles: list[object] = [1, 2, {}, [1, 2], ["k"]]
    data = b"".join(pickle.dumps(x, protocol=2) for x in pickles)
    assert_refused(scan_bytes(data)[0], "PICKLE_UNREADABLE", "magic number")


def test_legacy_pickle_not_ending_within_the_bound() -> None:
    findings, folder = scan_bytes(FACTORIES["legacy_pickle_past_the_bound"]())
    assert_refused(findings, "PICKLE_TOO_LARGE", "does not end within the first 64 MiB")
    assert folder.bytes_read <= MAX_PICKLE_BYTES


def test_pickle_member_too_large() -> None:
    big = b"\x80\x02" + b"N" * (MAX_PICKLE_BYTES + 1) + b"."
    findings, folder = scan_bytes(zip_archive([Entry(b"archive/data.pkl", big, deflate=True)]))
    assert_refused(findings, "PICKLE_TOO_LARGE", "archive/data.pkl", "64 MiB")
    assert folder.bytes_read < 200_000


def test_missing_file_raises_access_error(tmp_path: Path) -> None:
    with pytest.raises(AccessError):
        scan_pickle_weights(LocalFolder(tmp_path), FileInfo("gone.bin", 100_000))


# --- bounded reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_bytes_read_do_not_grow_with_tensor_data(torch: ModuleType, legacy: bool) -> None:
    read = []
    for numel in (250_000, 12_500_000):  # 1 MB and 50 MB of float32
        findings, folder = scan_bytes(saved(torch, state_dict(torch, numel), legacy))
        assert codes(findings) == ["PICKLE_WEIGHTS"]
        read.append(folder.bytes_read)
        assert folder.reads <= 3
    assert max(read) <= TAIL_BYTES + 8 * 1024
    assert abs(read[0] - read[1]) <= 64


# --- corrupted real files only give findings --------------------------------------------------

_SAMPLES: dict[bool, bytes] = {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_corrupted_torch_files_only_give_findings(
    torch: ModuleType, legacy: bool, edits: list[tuple[int, int]]
) -> None:
    if legacy not in _SAMPLES:
        _SAMPLES[legacy] = saved(torch, state_dict(torch), legacy)
    data = bytearray(_SAMPLES[legacy])
    for at, value in edits:
        data[at % len(data)] = value
    findings, _ = scan_bytes(bytes(data))
    assert len(findings) == 1 and findings[0].code in CODES
