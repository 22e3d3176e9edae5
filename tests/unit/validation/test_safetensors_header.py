"""The safetensors header parser: real files, forged lengths, and arbitrary bytes."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.catalog import dtype_bits
from modeldrop.domain.folder import FileInfo
from modeldrop.validation.safetensors_header import (
    MAX_DIMENSION,
    MAX_DIMS,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    HeaderError,
    header_length,
    parse_header,
    read_header,
)
from tests.fixtures.poison_events import DEEP
from tests.fixtures.safetensors_files import header_dict, write_header, write_sparse

TENSORS = [("a.weight", "BF16", [4, 8]), ("b.weight", "F32", [3]), ("c.bias", "F16", [5])]


def _file(folder: LocalFolder, name: str) -> FileInfo:
    return next(f for f in folder.list_files() if f.name == name)


def _code(raw: bytes, size: int | None = None) -> str:
    with pytest.raises(HeaderError) as caught:
        length = header_length(raw, size if size is not None else len(raw))
        parse_header(raw[8 : 8 + length], length, size if size is not None else len(raw))
    return caught.value.code


def _blob(header: dict, data_bytes: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    ends = [
        v["data_offsets"][1] for v in header.values() if isinstance(v, dict) and "data_offsets" in v
    ]
    end = max(ends, default=0)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * (end if data_bytes is None else data_bytes)


def test_real_file_parses_with_shapes_offsets_and_metadata(tmp_path):
    write_sparse(tmp_path / "m.safetensors", TENSORS, {"format": "pt"})
    folder = LocalFolder(tmp_path)
    header = read_header(folder, _file(folder, "m.safetensors"))
    assert header.tensors["a.weight"].shape == (4, 8)
    assert header.tensors["b.weight"].start == 64
    assert header.data_end == 64 + 12 + 10
    assert header.metadata == {"format": "pt"}
    assert folder.reads == 1


def test_real_safetensors_library_output_is_accepted(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    save_file(
        {"x": torch.zeros(3, 5, dtype=torch.bfloat16), "y": torch.ones(7)},
        tmp_path / "t.safetensors",
    )
    folder = LocalFolder(tmp_path)
    header = read_header(folder, _file(folder, "t.safetensors"))
    assert {n: t.shape for n, t in header.tensors.items()} == {"x": (3, 5), "y": (7,)}


def test_long_header_takes_exactly_two_reads(tmp_path):
    many = [(f"layer.{i}.weight", "BF16", [2, 2]) for i in range(2000)]
    write_sparse(tmp_path / "big.safetensors", many)
    folder = LocalFolder(tmp_path)
    header = read_header(folder, _file(folder, "big.safetensors"))
    assert len(header.tensors) == 2000
    assert folder.reads == 2


def test_bytes_read_do_not_grow_with_tensor_data(tmp_path):
    write_sparse(tmp_path / "small.safetensors", [("w", "BF16", [16, 16])])
    write_sparse(tmp_path / "huge.safetensors", [("w", "BF16", [65536, 65536])])  # 8 GiB, sparse
    small, huge = LocalFolder(tmp_path), LocalFolder(tmp_path)
    read_header(small, _file(small, "small.safetensors"))
    read_header(huge, _file(huge, "huge.safetensors"))
    assert huge.bytes_read <= small.bytes_read + 16 * 1024
    assert huge.bytes_read < 20 * 1024


@pytest.mark.parametrize(
    ("blob", "code"),
    [
        (b"", "SAFETENSORS_TOO_SHORT"),
        (b"\x01\x00", "SAFETENSORS_TOO_SHORT"),
        (struct.pack("<Q", 0), "SAFETENSORS_HEADER_TOO_LARGE"),
        (struct.pack("<Q", 2**63) + b"{}", "SAFETENSORS_HEADER_TOO_LARGE"),
        (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}", "SAFETENSORS_HEADER_TOO_LARGE"),
        (struct.pack("<Q", 100) + b"{}", "SAFETENSORS_TRUNCATED"),
        (struct.pack("<Q", 5) + b"{nope", "SAFETENSORS_HEADER_INVALID"),
        (struct.pack("<Q", 2) + b"[]", "SAFETENSORS_HEADER_INVALID"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "SAFETENSORS_HEADER_INVALID"),
        (
            _blob({"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}),
            "SAFETENSORS_UNKNOWN_DTYPE",
        ),
        (
            _blob({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
            "SAFETENSORS_HEADER_INVALID",
        ),
        (
            _blob({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}),
            "SAFETENSORS_HEADER_INVALID",
        ),
        (
            _blob({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}),
            "SAFETENSORS_TENSOR_SIZE_MISMATCH",
        ),
        (_blob({"w": "x"}), "SAFETENSORS_HEADER_INVALID"),
        (_blob({"__metadata__": {"a": 1}}), "SAFETENSORS_HEADER_INVALID"),
        (_blob(header_dict(TENSORS), data_bytes=10), "SAFETENSORS_TRUNCATED"),
        (_blob(header_dict(TENSORS), data_bytes=200), "SAFETENSORS_PADDED"),
    ],
)
def test_broken_headers_raise_typed_errors(blob, code):
    assert _code(blob) == code


def test_overlapping_and_gapped_offsets():
    overlap = header_dict(TENSORS)
    overlap["b.weight"]["data_offsets"] = [60, 72]
    overlap["c.bias"]["data_offsets"] = [72, 82]
    gap = header_dict(TENSORS)
    gap["a.weight"]["data_offsets"] = [4, 68]
    gap["b.weight"]["data_offsets"] = [68, 80]
    gap["c.bias"]["data_offsets"] = [80, 90]
    assert _code(_blob(overlap)) == "SAFETENSORS_OFFSETS_OVERLAP"
    assert _code(_blob(gap)) == "SAFETENSORS_OFFSETS_GAP"


def test_duplicate_tensor_names_are_rejected():
    entry = b'{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'
    raw = b'{"w":' + entry + b',"w":' + entry + b"}"
    assert _code(struct.pack("<Q", len(raw)) + raw + b"\0") == "SAFETENSORS_HEADER_INVALID"


def test_forged_length_is_bounded_before_reading(tmp_path):
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}" + b" " * 100)
    folder = LocalFolder(tmp_path)
    with pytest.raises(HeaderError) as caught:
        read_header(folder, _file(folder, "bomb.safetensors"))
    assert caught.value.code == "SAFETENSORS_HEADER_TOO_LARGE"
    assert folder.bytes_read <= 16 * 1024


def test_file_cut_inside_the_header(tmp_path):
    header = header_dict([(f"t{i}", "U8", [1]) for i in range(3000)])
    path = write_header(tmp_path / "cut.safetensors", header)
    path.write_bytes(path.read_bytes()[:30000])
    folder = LocalFolder(tmp_path)
    with pytest.raises(HeaderError) as caught:
        read_header(folder, _file(folder, "cut.safetensors"))
    assert caught.value.code == "SAFETENSORS_TRUNCATED"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_header_errors(blob):
    try:
        length = header_length(blob, len(blob))
        parse_header(blob[8 : 8 + length], length, len(blob))
    except HeaderError as exc:
        assert exc.code.startswith("SAFETENSORS_")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
entries = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F32", "BF16", "U8", "I64", "F4", "X", 3]),
        "shape": st.lists(st.integers(min_value=-2, max_value=2**40), max_size=5) | json_values,
        "data_offsets": st.lists(st.integers(min_value=-5, max_value=2**50), max_size=3)
        | json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(max_size=10), entries | json_values, max_size=6),
    st.integers(min_value=0, max_value=2**50),
)
def test_arbitrary_json_headers_only_raise_header_errors(document, data_size):
    raw = json.dumps(document).encode()
    size = 8 + len(raw) + data_size
    try:
        header = parse_header(raw, len(raw), size)
    except HeaderError as exc:
        assert exc.code.startswith("SAFETENSORS_")
    else:
        assert 8 + len(raw) + header.data_end == size


def test_deeply_nested_json_is_an_error_not_a_crash():
    raw = DEEP.encode()
    with pytest.raises(HeaderError):
        parse_header(raw, len(raw), len(raw) + 8)


huge_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=2**63, max_value=2**1100),
    st.just(10**309),
    st.just(-(10**400)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(huge_ints, min_size=1, max_size=9), st.lists(huge_ints, min_size=2, max_size=2))
def test_huge_and_negative_numbers_are_header_errors_never_overflow(shape, offsets):
    raw = json.dumps({"t": {"dtype": "BF16", "shape": shape, "data_offsets": offsets}}).encode()
    try:
        header = parse_header(raw, len(raw), 8 + len(raw) + max(0, offsets[1]))
    except HeaderError as exc:
        assert exc.code.startswith("SAFETENSORS_")
        assert len(exc.message) < 1000  # quoted numbers are cut, never printed whole
    else:  # only a consistent layout passes: exact sizes, every dimension in bounds
        (tensor,) = header.tensors.values()
        assert all(0 <= d <= MAX_DIMENSION for d in shape) and len(shape) <= MAX_DIMS
        assert tensor.end - tensor.start == tensor.elements * 2


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["F4", "F6_E2M3", "BF16", "F32", "BOOL"]),
    st.lists(st.integers(min_value=0, max_value=MAX_DIMENSION), min_size=1, max_size=MAX_DIMS),
)
def test_tensor_byte_sizes_are_exact_integer_arithmetic(dtype, shape):
    bits = dtype_bits()[dtype]
    exact = (math.prod(shape) * bits + 7) // 8  # what a float ceil gets wrong past 2**53
    raw = json.dumps({"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, exact]}})
    if exact <= 2**64 - 1:
        header = parse_header(raw.encode(), len(raw), 8 + len(raw) + exact)
        assert header.data_end == exact
    else:
        assert _code_of(raw.encode(), 8 + len(raw) + exact) == "SAFETENSORS_HEADER_INVALID"


def _code_of(raw: bytes, size: int) -> str:
    with pytest.raises(HeaderError) as caught:
        parse_header(raw, len(raw), size)
    return caught.value.code


def test_too_many_tensors_are_refused_before_parsing():
    entry = '"t{}":{{"dtype":"F16","shape":[0],"data_offsets":[0,0]}}'
    raw = ("{" + ",".join(entry.format(i) for i in range(MAX_TENSORS + 1)) + "}").encode()
    assert _code_of(raw, 8 + len(raw)) == "SAFETENSORS_TOO_MANY_TENSORS"


def test_duplicate_tensor_names_are_found_next_to_metadata():
    raw = json.dumps({"__metadata__": {"format": "pt"}}).encode()[:-1] + (
        b',"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    )
    assert _code_of(raw, 8 + len(raw) + 1) == "SAFETENSORS_HEADER_INVALID"
