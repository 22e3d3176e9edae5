"""A hostile corpus: folders built to crash, stall or flood validation. Each ends in its verdict
with its code, in bounded time and memory, with short messages and a verdict that fits a record.

| folder                      | what it tries                                                | verdict  | expected code                  |
|-----------------------------|--------------------------------------------------------------|----------|--------------------------------|
| shape_1e309                 | a tensor of shape [10**309] (float overflow)                 | rejected | SAFETENSORS_HEADER_INVALID     |
| shape_zero_by_1e4000        | shape [0, 10**4000]: zero elements, absurd dimension         | rejected | SAFETENSORS_HEADER_INVALID     |
| shape_negative              | shape [-1, 896]                                              | rejected | SAFETENSORS_HEADER_INVALID     |
| shape_bool                  | shape [true, 896]                                            | rejected | SAFETENSORS_HEADER_INVALID     |
| shape_nine_dims             | nine dimensions                                              | rejected | SAFETENSORS_HEADER_INVALID     |
| offsets_past_u64            | data_offsets [0, 2**70]                                      | rejected | SAFETENSORS_HEADER_INVALID     |
| dtype_50mb                  | a 50 MB dtype string                                         | rejected | SAFETENSORS_UNKNOWN_DTYPE      |
| header_duplicate_tensor     | one tensor name twice                                        | rejected | SAFETENSORS_HEADER_INVALID     |
| header_nested_deep          | the header is 100,000 nested lists                           | rejected | SAFETENSORS_HEADER_INVALID     |
| header_comma_flood          | the header is a 30 MB list of zeros                          | rejected | SAFETENSORS_HEADER_INVALID     |
| million_zero_tensors        | 10**6 zero-size tensors in one header                        | rejected | SAFETENSORS_TOO_MANY_TENSORS   |
| eight_shards_of_140k        | 8 shards of 140,000 zero-size tensors (folder budget)        | rejected | SAFETENSORS_TOO_MANY_TENSORS   |
| tensor_budget_edge          | 2 shards of 99,000 zero-size tensors: just inside budgets    | rejected | WEIGHTS_EMPTY                  |
| padding_header_100mib       | a 100 MiB header of spaces and no tensors                    | rejected | WEIGHTS_EMPTY                  |
| two_padding_headers         | two 80 MiB headers (folder header budget)                    | rejected | SAFETENSORS_HEADERS_TOO_LARGE  |
| no_tensors                  | shards whose headers hold no tensors                         | rejected | WEIGHTS_EMPTY                  |
| zero_size_tensors           | every tensor has a zero dimension                            | rejected | WEIGHTS_EMPTY                  |
| tensor_name_5mb             | a 5 MB tensor name the index does not map                    | accepted | INDEX_TENSOR_UNLISTED          |
| unicode_tensor_names        | tensor names in many scripts, RTL marks and NULs             | accepted | BASE_MODEL_MATCHED             |
| config_hidden_1e400         | hidden_size 10**400                                          | rejected | CONFIG_FIELD_INVALID           |
| config_hidden_zero          | hidden_size 0                                                | rejected | CONFIG_FIELD_INVALID           |
| config_hidden_negative      | hidden_size -896                                             | rejected | CONFIG_FIELD_INVALID           |
| config_layers_infinite      | num_hidden_layers 1e400 (a float infinity)                   | rejected | CONFIG_FIELD_INVALID           |
| config_heads_bool           | num_attention_heads true                                     | rejected | CONFIG_FIELD_INVALID           |
| config_vocab_2_to_40        | vocab_size 2**40                                             | rejected | CONFIG_FIELD_INVALID           |
| config_architecture_3_9mb   | a 3.9 MB architecture name                                   | rejected | CONFIG_NO_ARCHITECTURE         |
| config_model_type_1mb       | a 1 MB model_type                                            | rejected | CONFIG_NO_MODEL_TYPE           |
| config_nested_deep          | config.json is 100,000 nested lists                          | rejected | CONFIG_INVALID_JSON            |
| config_number_5000_digits   | an integer of 5,000 digits (Python refuses to parse it)      | rejected | CONFIG_INVALID_JSON            |
| quant_method_2mb            | quantization_config quant_method of 2 MB                     | rejected | QUANTIZED_CONFIG               |
| quant_method_blank          | quant_method "   "                                           | rejected | QUANTIZED_CONFIG               |
| tokenizer_config_deep       | tokenizer_config.json nested 100,000 deep                    | rejected | TOKENIZER_CONFIG_INVALID       |
| index_values_lists          | weight_map values are lists                                  | rejected | INDEX_INVALID                  |
| index_nested_deep           | the index is 100,000 nested lists                            | rejected | INDEX_INVALID                  |
| index_20000_shards          | the index names 20,000 shards                                | rejected | INDEX_TOO_LARGE                |
| index_entry_flood           | an index of 600,000 entries                                  | rejected | INDEX_TOO_LARGE                |
| index_weight_map_string     | weight_map is a string                                       | rejected | INDEX_INVALID                  |
| stray_shards_300            | 300 shards the index does not name (findings capped)         | accepted | INDEX_SHARD_UNREFERENCED       |
| overrides_alias_bomb        | 525 bytes of nested YAML aliases under project_allowlist     | rejected | OVERRIDES_INVALID              |
| overrides_python_tag        | !!python/object/apply:os.system                              | rejected | OVERRIDES_INVALID              |
| overrides_deep_nesting      | 100 nested flow lists                                        | rejected | OVERRIDES_INVALID              |
| overrides_int_keys          | a mapping with integer keys                                  | rejected | OVERRIDES_INVALID              |
| overrides_date_value        | a YAML timestamp value                                       | rejected | OVERRIDES_INVALID              |
| overrides_long_string       | a 60 KB display name (the schema message would reprint it)   | rejected | OVERRIDES_INVALID              |
| overrides_many_nodes        | 20,000 list items                                            | rejected | OVERRIDES_INVALID              |
| too_many_root_files         | 10,001 files at the top level                                | rejected | FOLDER_TOO_MANY_FILES          |
| too_many_shards             | 4,097 safetensors shards                                     | rejected | FOLDER_TOO_MANY_FILES          |

Pickle payloads (`tests/fixtures/hostile_pickles.py`) join the corpus as folders whose only
weights are that `pytorch_model.bin`, each with the code its table gives.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.catalog import file_rules
from modeldrop.domain.findings import MAX_MESSAGE_CHARS
from modeldrop.validation.validator import validate_folder
from tests.fixtures.hostile_pickles import HOSTILE_PICKLES
from tests.fixtures.safetensors_files import data_end, header_dict, write_header, write_sparse
from tests.unit.validation.test_bad_inputs import (
    INDEX,
    SHARD1,
    SHARD2,
    TENSORS_1,
    TENSORS_2,
    base_config,
    only,
    write_json,
    write_valid,
)

VERDICT_BYTES = 256 * 1024
DEEP = b"[" * 100_000 + b"]" * 100_000
Mutation = Callable[[Path], None]


def raw_header(path: Path, raw: bytes) -> None:
    """A safetensors file whose header is exactly `raw` and whose data region is empty."""
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def tensor_entry(path: Path, name: str, entry: dict) -> None:
    """Shard 1 with one tensor's entry replaced by `entry`, sized for the original data."""
    header = header_dict(TENSORS_1)
    data = data_end(header)
    header[name] = entry
    length = len(json.dumps(header, separators=(",", ":")))
    write_header(path, header, size=8 + length + (-length % 8) + data)


def bad_tensor(**entry: object) -> Mutation:
    base = {"dtype": "BF16", "shape": [896], "data_offsets": [0, 1792]}
    return lambda r: tensor_entry(r / SHARD1, "model.norm.weight", {**base, **entry})


def zero_tensors(count: int) -> bytes:
    entries = ",".join(
        f'"t{i}":{{"dtype":"F16","shape":[0],"data_offsets":[0,0]}}' for i in range(count)
    )
    return ("{" + entries + "}").encode()


def config(**changes: object) -> Mutation:
    return lambda r: write_json(r / "config.json", base_config(**changes))


def config_text(text: bytes) -> Mutation:
    return lambda r: (r / "config.json").write_bytes(text)


def index(document: object) -> Mutation:
    return lambda r: write_json(r / INDEX, document)


def overrides(text: str) -> Mutation:
    return lambda r: (r / "modeldrop.yaml").write_text(text)


def both_shards(raw: bytes) -> Mutation:
    def mutate(root: Path) -> None:
        raw_header(root / SHARD1, raw)
        raw_header(root / SHARD2, raw)

    return mutate


def padded_shards(count: int, header_bytes: int) -> Mutation:
    def mutate(root: Path) -> None:
        for f in (SHARD1, SHARD2, INDEX):
            (root / f).unlink()
        names = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        for name in names:
            raw_header(root / name, b"{}" + b" " * (header_bytes - 2))
        write_json(root / INDEX, {"weight_map": {}})

    return mutate


def many_shards(count: int, tensors_each: int) -> Mutation:
    def mutate(root: Path) -> None:
        for f in (SHARD1, SHARD2, INDEX):
            (root / f).unlink()
        raw = zero_tensors(tensors_each)
        for i in range(count):
            raw_header(root / f"model-{i + 1:05d}-of-{count:05d}.safetensors", raw)
        write_json(root / INDEX, {"weight_map": {"t0": "model-00001-of-00001.safetensors"}})

    return mutate


def long_tensor_name(root: Path) -> None:
    write_sparse(root / SHARD1, [*TENSORS_1, ("x" * 5_000_000, "BF16", [1])])


def unicode_names(root: Path) -> None:
    odd = [
        ("模型.层.0", "BF16", [4]),
        ("\u202eevil\u202c", "BF16", [4]),
        ("nul\x00name", "BF16", [4]),
    ]
    write_sparse(root / SHARD1, [*TENSORS_1, *odd])
    weight_map = {n: SHARD1 for n, _, _ in [*TENSORS_1, *odd]} | {
        n: SHARD2 for n, _, _ in TENSORS_2
    }
    write_json(root / INDEX, {"weight_map": weight_map})


def stray_shards(root: Path) -> None:
    for i in range(300):
        write_sparse(root / f"stray-{i:03d}.safetensors", [(f"stray.{i}", "BF16", [4])])


def root_files(count: int) -> Mutation:
    def mutate(root: Path) -> None:
        for i in range(count):
            (root / f"note-{i:05d}.txt").write_bytes(b"")

    return mutate


def shards_files(count: int) -> Mutation:
    def mutate(root: Path) -> None:
        for i in range(count):
            (root / f"s-{i:05d}.safetensors").write_bytes(b"")

    return mutate


ALIAS_BOMB = """a: &a ["lol-project-a","lol-project-a","lol-project-a","lol-project-a"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
private_endpoint: {project_allowlist: [*g,*g,*g,*g,*g,*g,*g,*g,*g]}
"""

CORPUS: dict[str, tuple[Mutation, str, str]] = {
    "shape_1e309": (bad_tensor(shape=[10**309]), "rejected", "SAFETENSORS_HEADER_INVALID"),
    "shape_zero_by_1e4000": (
        bad_tensor(shape=[0, 10**4000]), "rejected", "SAFETENSORS_HEADER_INVALID"),
    "shape_negative": (bad_tensor(shape=[-1, 896]), "rejected", "SAFETENSORS_HEADER_INVALID"),
    "shape_bool": (bad_tensor(shape=[True, 896]), "rejected", "SAFETENSORS_HEADER_INVALID"),
    "shape_nine_dims": (bad_tensor(shape=[1] * 8 + [896]), "rejected",
                        "SAFETENSORS_HEADER_INVALID"),
    "offsets_past_u64": (
        bad_tensor(data_offsets=[0, 2**70]), "rejected", "SAFETENSORS_HEADER_INVALID"),
    "dtype_50mb": (bad_tensor(dtype="B" * 50_000_000), "rejected", "SAFETENSORS_UNKNOWN_DTYPE"),
    "header_duplicate_tensor": (
        lambda r: raw_header(r / SHARD1, b'{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},'
                             b'"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}'),
        "rejected", "SAFETENSORS_HEADER_INVALID"),
    "header_nested_deep": (lambda r: raw_header(r / SHARD1, DEEP), "rejected",
                           "SAFETENSORS_HEADER_INVALID"),
    "header_comma_flood": (
        lambda r: raw_header(r / SHARD1, b"[" + b"0," * 15_000_000 + b"0]"), "rejected",
        "SAFETENSORS_HEADER_INVALID"),
    "million_zero_tensors": (
        lambda r: raw_header(r / SHARD1, zero_tensors(1_000_000)), "rejected",
        "SAFETENSORS_TOO_MANY_TENSORS"),
    "eight_shards_of_140k": (many_shards(8, 140_000), "rejected",
                             "SAFETENSORS_TOO_MANY_TENSORS"),
    "tensor_budget_edge": (many_shards(2, 99_000), "rejected", "WEIGHTS_EMPTY"),
    "padding_header_100mib": (padded_shards(1, 100 * 2**20), "rejected", "WEIGHTS_EMPTY"),
    "two_padding_headers": (padded_shards(2, 80 * 2**20), "rejected",
                            "SAFETENSORS_HEADERS_TOO_LARGE"),
    "no_tensors": (both_shards(b"{}"), "rejected", "WEIGHTS_EMPTY"),
    "zero_size_tensors": (
        lambda r: (write_sparse(r / SHARD1, [(n, d, [0, *s]) for n, d, s in TENSORS_1]),
                   write_sparse(r / SHARD2, [(n, d, [0, *s]) for n, d, s in TENSORS_2])),
        "rejected", "WEIGHTS_EMPTY"),
    "tensor_name_5mb": (long_tensor_name, "accepted", "INDEX_TENSOR_UNLISTED"),
    "unicode_tensor_names": (unicode_names, "accepted", "BASE_MODEL_MATCHED"),
    "config_hidden_1e400": (config(hidden_size=10**400), "rejected", "CONFIG_FIELD_INVALID"),
    "config_hidden_zero": (config(hidden_size=0), "rejected", "CONFIG_FIELD_INVALID"),
    "config_hidden_negative": (config(hidden_size=-896), "rejected", "CONFIG_FIELD_INVALID"),
    "config_layers_infinite": (
        config_text(json.dumps(base_config(num_hidden_layers=0)).replace(
            '"num_hidden_layers": 0', '"num_hidden_layers": 1e400').encode()),
        "rejected", "CONFIG_FIELD_INVALID"),
    "config_heads_bool": (config(num_attention_heads=True), "rejected", "CONFIG_FIELD_INVALID"),
    "config_vocab_2_to_40": (config(vocab_size=2**40), "rejected", "CONFIG_FIELD_INVALID"),
    "config_architecture_3_9mb": (
        config(architectures=["L" * 3_900_000]), "rejected", "CONFIG_NO_ARCHITECTURE"),
    "config_model_type_1mb": (config(model_type="q" * 2**20), "rejected", "CONFIG_NO_MODEL_TYPE"),
    "config_nested_deep": (config_text(DEEP), "rejected", "CONFIG_INVALID_JSON"),
    "config_number_5000_digits": (
        config_text(b'{"hidden_size": 1' + b"0" * 5000 + b"}"), "rejected",
        "CONFIG_INVALID_JSON"),
    "quant_method_2mb": (
        config(quantization_config={"quant_method": "g" * 2**21}), "rejected",
        "QUANTIZED_CONFIG"),
    "quant_method_blank": (
        config(quantization_config={"quant_method": "   "}), "rejected", "QUANTIZED_CONFIG"),
    "tokenizer_config_deep": (
        lambda r: (r / "tokenizer_config.json").write_bytes(DEEP), "rejected",
        "TOKENIZER_CONFIG_INVALID"),
    "index_values_lists": (
        index({"weight_map": {n: [SHARD1] for n, _, _ in TENSORS_1}}), "rejected",
        "INDEX_INVALID"),
    "index_nested_deep": (lambda r: (r / INDEX).write_bytes(DEEP), "rejected", "INDEX_INVALID"),
    "index_20000_shards": (
        index({"weight_map": {f"t{i}": f"model-{i:05d}.safetensors" for i in range(20_000)}}),
        "rejected", "INDEX_TOO_LARGE"),
    "index_entry_flood": (
        index({"weight_map": {f"t{i}": SHARD1 for i in range(600_000)}}), "rejected",
        "INDEX_TOO_LARGE"),
    "index_weight_map_string": (index({"weight_map": "everything"}), "rejected", "INDEX_INVALID"),
    "stray_shards_300": (stray_shards, "accepted", "INDEX_SHARD_UNREFERENCED"),
    "overrides_alias_bomb": (overrides(ALIAS_BOMB), "rejected", "OVERRIDES_INVALID"),
    "overrides_python_tag": (
        overrides("labels: !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
        "rejected", "OVERRIDES_INVALID"),
    "overrides_deep_nesting": (overrides("labels: " + "[" * 100 + "]" * 100 + "\n"), "rejected",
                               "OVERRIDES_INVALID"),
    "overrides_int_keys": (overrides("labels: {1: a, 2: b}\n"), "rejected", "OVERRIDES_INVALID"),
    "overrides_date_value": (overrides("model_display_name: 2026-12-01\n"), "rejected",
                             "OVERRIDES_INVALID"),
    "overrides_long_string": (overrides("model_display_name: " + "x" * 60_000 + "\n"),
                              "rejected", "OVERRIDES_INVALID"),
    "overrides_many_nodes": (overrides("labels: [" + "1," * 20_000 + "1]\n"), "rejected",
                             "OVERRIDES_INVALID"),
    "too_many_root_files": (root_files(10_001), "rejected", "FOLDER_TOO_MANY_FILES"),
    "too_many_shards": (shards_files(4_097), "rejected", "FOLDER_TOO_MANY_FILES"),
}  # fmt: skip


def pickle_folder(build: Callable[[], bytes]) -> Mutation:
    return lambda root: only("pytorch_model.bin", build())(root)


CORPUS |= {
    f"pickle_{name}": (pickle_folder(build), "rejected", code)
    for name, build, code, _ in HOSTILE_PICKLES
}


def test_the_corpus_is_large():
    assert len(CORPUS) >= 40 + len(HOSTILE_PICKLES)
    assert len({code for _, _, code in CORPUS.values()}) >= 15


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_folder_gets_its_verdict(tmp_path, name):
    mutate, expected, code = CORPUS[name]
    root = write_valid(tmp_path / name)
    mutate(root)
    verdict = validate_folder(LocalFolder(root))
    data = verdict.as_dict()
    assert data["verdict"] == expected, data["findings"][:5]
    assert code in [f["code"] for f in data["findings"]], data["findings"][:5]
    assert len(json.dumps(data)) < VERDICT_BYTES
    for finding in data["findings"]:
        assert len(finding["message"]) <= 2 * MAX_MESSAGE_CHARS + 1, finding["code"]


def test_findings_of_one_code_are_capped(tmp_path):
    root = write_valid(tmp_path / "strays")
    stray_shards(root)
    findings = validate_folder(LocalFolder(root)).as_dict()["findings"]
    strays = [f for f in findings if f["code"] == "INDEX_SHARD_UNREFERENCED"]
    assert len(strays) == 21
    assert "and 280 more INDEX_SHARD_UNREFERENCED" in strays[-1]["message"]


def test_a_listing_past_the_bound_is_rejected_without_reading(tmp_path, monkeypatch):
    root = write_valid(tmp_path / "listed")
    root_files(5)(root)  # 10 files in all
    monkeypatch.setitem(file_rules()["limits"], "listed_files", 7)
    folder = LocalFolder(root)
    verdict = validate_folder(folder)
    assert len(folder.list_files()) == 8  # the adapter stops one past the bound
    assert [f.code for f in verdict.errors] == ["FOLDER_TOO_MANY_FILES"]
    assert folder.reads == 0
