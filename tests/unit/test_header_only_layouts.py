"""The header-only fixture folders are realistic: official parameter counts, real HF layouts,
valid sparse safetensors files and a complete index, for every base model in the catalog."""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import pytest

from modeldrop import catalog
from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.validation.architecture import base_fields
from modeldrop.validation.validator import validate_folder
from tests.fixtures.header_only import (
    OFFICIAL_PARAMETERS,
    config_for,
    tensor_bytes,
    tensor_layout,
    write_header_only_folder,
)
from tests.fixtures.safetensors_files import DTYPE_BYTES

CATALOG = catalog.base_models()
BY_NAME = {base["model"]: base for base in CATALOG}
MODELS = pytest.mark.parametrize("base", CATALOG, ids=[base["model"] for base in CATALOG])
MiB = 2**20


def read_header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return length, json.loads(handle.read(length))


def test_catalog_is_loaded_and_every_model_has_an_official_count():
    assert len(CATALOG) >= 37
    missing = [name for name in BY_NAME if name not in OFFICIAL_PARAMETERS]
    assert not missing, f"no official parameter count for {missing}"


def _same_architecture(a: dict, b: dict) -> bool:
    ignore = {"vocab_size"}
    fa, fb = base_fields(a), base_fields(b)
    return {k: v for k, v in fa.items() if k not in ignore} == {
        k: v for k, v in fb.items() if k not in ignore
    } and a["model_type"] == b["model_type"]


@MODELS
def test_validator_matches_base_model_and_official_parameter_count(base, tmp_path):
    folder = LocalFolder(write_header_only_folder(tmp_path / "model", base))
    verdict = validate_folder(folder)
    assert verdict.accepted, [f.as_dict() for f in verdict.errors]
    matched = next(b for b in CATALOG if b["model"] == verdict.matched_base)
    assert matched is base or _same_architecture(matched, base), verdict.matched_base
    official, source = OFFICIAL_PARAMETERS[base["model"]]
    assert abs(verdict.parameters - official) <= 0.01 * official, (
        f"{base['model']}: counted {verdict.parameters:,}, official {official:,} ({source})"
    )
    shards = sum(1 for f in folder.list_files() if f.name.endswith(".safetensors"))
    # two header reads per shard, plus config, tokenizer_config, tokenizer.json,
    # generation_config.json and the index
    assert folder.reads <= 2 * shards + 5


@MODELS
def test_layout_is_well_formed(base):
    tensors = tensor_layout(base)
    names = [name for name, _, _ in tensors]
    assert len(names) == len(set(names))
    for name, dtype, shape in tensors:
        assert dtype in DTYPE_BYTES, name
        assert shape and all(isinstance(d, int) and d > 0 for d in shape), name
    by_name = {name: (dtype, shape) for name, dtype, shape in tensors}
    text = base.get("text_config") or base
    vocab, hidden = text.get("vocab_size"), text["hidden_size"]
    embeds = [n for n in names if n.endswith("embed_tokens.weight") and ".layers." not in n]
    assert len(embeds) == 1
    if vocab:
        assert by_name[embeds[0]][1] == [vocab, hidden]
    mt = base["model_type"]
    if mt == "deepseek_v3":
        fp8 = [n for n, (d, _) in by_name.items() if d == "F8_E4M3"]
        assert fp8 and all(n.endswith(".weight") for n in fp8)
        for name in fp8:
            out, inp = by_name[name][1]
            assert by_name[f"{name}_scale_inv"] == (
                "F32",
                [math.ceil(out / 128), math.ceil(inp / 128)],
            )
        mtp = f"model.layers.{base['num_hidden_layers']}"
        for part in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.head.weight"):
            assert f"{mtp}.{part}" in by_name
        assert by_name["lm_head.weight"][0] == "BF16"
    if mt == "gpt_oss":
        blocks = [n for n in names if n.endswith("_blocks")]
        assert len(blocks) == 2 * base["num_hidden_layers"]
        for name in blocks:
            dtype, shape = by_name[name]
            assert dtype == "U8" and shape[-1] == 16 and shape[-2] == 90
            assert by_name[name.replace("_blocks", "_scales")] == ("U8", shape[:-1])
        others = {d for n, (d, _) in by_name.items() if not n.endswith(("_blocks", "_scales"))}
        assert others == {"BF16"}
    if base["architectures"][0].endswith("ForConditionalGeneration"):
        assert any(n.startswith(("vision_tower.", "vision_model.")) for n in names)
        assert any(n.startswith("multi_modal_projector.") for n in names)
        assert any(n.startswith("language_model.model.layers.") for n in names)


@MODELS
def test_config_is_the_hf_config(base):
    config = config_for(base)
    assert config["architectures"] == base["architectures"]
    assert config["model_type"] == base["model_type"]
    json.dumps(config)  # serializable
    if base.get("text_config"):
        assert config["text_config"]["hidden_size"] == base["text_config"]["hidden_size"]
        assert isinstance(config["vision_config"], dict)
        assert "num_hidden_layers" in config["vision_config"]
    else:
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if base.get(key) is not None:
                assert config[key] == base[key], key
    if base["model_type"] == "deepseek_v3":
        quant = config["quantization_config"]
        assert quant["quant_method"] == "fp8" and quant["fmt"] == "e4m3"
        assert quant["activation_scheme"] == "dynamic" and quant["weight_block_size"] == [128, 128]
    if base["model_type"] == "gpt_oss":
        quant = config["quantization_config"]
        assert quant["quant_method"] == "mxfp4" and quant["modules_to_not_convert"]
        assert isinstance(config["layer_types"], list)
        assert len(config["layer_types"]) == base["num_hidden_layers"]


def check_folder(folder: Path, tensors: list, shard_bytes: int) -> list[Path]:
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        json.loads((folder / name).read_text())
    files = sorted(folder.glob("*.safetensors"))
    expected = {name: (dtype, shape) for name, dtype, shape in tensors}
    seen: dict[str, str] = {}
    for path in files:
        length, header = read_header(path)
        entries = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max(v["data_offsets"][1] for v in entries.values())
        stat = path.stat()
        assert stat.st_size == 8 + length + end, path.name
        assert stat.st_blocks * 512 <= 8 + length + MiB, f"{path.name} is not sparse"
        offset = 0
        for key, entry in sorted(entries.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            assert entry["data_offsets"][0] == offset, key
            offset = entry["data_offsets"][1]
            assert offset - entry["data_offsets"][0] == tensor_bytes(entry["dtype"], entry["shape"])
            assert (entry["dtype"], entry["shape"]) == expected[key], key
            seen[key] = path.name
        assert end <= shard_bytes or len(entries) == 1, f"{path.name} over the shard size"
    assert set(seen) == set(expected)
    index_path = folder / "model.safetensors.index.json"
    if len(files) == 1:
        assert files[0].name == "model.safetensors" and not index_path.exists()
    else:
        index = json.loads(index_path.read_text())
        assert index["weight_map"] == seen
        total = sum(tensor_bytes(dtype, shape) for dtype, shape in expected.values())
        assert index["metadata"]["total_size"] == total
        n = len(files)
        assert [p.name for p in files] == [
            f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)
        ]
    return files


@MODELS
def test_written_folder_is_sparse_complete_and_indexed(base, tmp_path):
    folder = write_header_only_folder(tmp_path / "model", base)
    assert json.loads((folder / "config.json").read_text()) == config_for(base)
    check_folder(folder, tensor_layout(base), 5 * 2**30)
    disk = sum(p.stat().st_blocks * 512 for p in folder.iterdir())
    assert disk < 64 * MiB


def test_small_shards_split_a_model_across_files(tmp_path):
    base = BY_NAME["Qwen2.5-0.5B"]
    folder = write_header_only_folder(tmp_path / "qwen", base, shard_bytes=100 * MiB)
    files = check_folder(folder, tensor_layout(base), 100 * MiB)
    assert len(files) > 5


def test_671b_folder_is_fast_and_small(tmp_path):
    base = BY_NAME["DeepSeek-V3"]
    start = time.monotonic()
    folder = write_header_only_folder(tmp_path / "ds", base)
    elapsed = time.monotonic() - start
    apparent = sum(p.stat().st_size for p in folder.iterdir())
    disk = sum(p.stat().st_blocks * 512 for p in folder.iterdir())
    assert apparent > 600 * 2**30 and disk < 64 * MiB
    assert elapsed < 30, f"{elapsed:.1f}s"
