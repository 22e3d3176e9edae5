"""A corpus of broken model folders: each is rejected with the right code, none raises.

| folder                    | what is wrong                                        | expected code                   |
|---------------------------|------------------------------------------------------|---------------------------------|
| missing_config            | no config.json                                       | CONFIG_MISSING                  |
| missing_tokenizer         | no tokenizer.json / tokenizer.model                  | TOKENIZER_MISSING               |
| missing_tokenizer_config  | no tokenizer_config.json                             | TOKENIZER_CONFIG_MISSING        |
| tokenizer_config_broken   | tokenizer_config.json is not a JSON object           | TOKENIZER_CONFIG_INVALID        |
| no_weights                | config and tokenizer only                            | WEIGHTS_MISSING                 |
| missing_shard             | the index names a shard that is not there            | INDEX_SHARD_MISSING             |
| shards_without_index      | two shards, no index                                 | INDEX_MISSING                   |
| index_not_json            | the index is not JSON                                | INDEX_INVALID                   |
| index_tensor_not_in_shard | the index maps a tensor its shard lacks              | INDEX_TENSOR_MISSING            |
| truncated_shard           | a shard cut short                                    | SAFETENSORS_TRUNCATED           |
| padded_shard              | bytes after the last tensor                          | SAFETENSORS_PADDED              |
| empty_shard               | a zero-byte shard                                    | SAFETENSORS_TOO_SHORT           |
| overlapping_offsets       | two tensors share bytes                              | SAFETENSORS_OFFSETS_OVERLAP     |
| offsets_gap               | unused bytes between tensors                         | SAFETENSORS_OFFSETS_GAP         |
| header_length_bomb        | header length 2**62                                  | SAFETENSORS_HEADER_TOO_LARGE    |
| header_invalid_json       | the header is not JSON                               | SAFETENSORS_HEADER_INVALID      |
| unknown_dtype             | dtype "Q4"                                           | SAFETENSORS_UNKNOWN_DTYPE       |
| tensor_size_mismatch      | offsets span the wrong number of bytes               | SAFETENSORS_TENSOR_SIZE_MISMATCH|
| config_invalid_json       | config.json is not JSON                              | CONFIG_INVALID_JSON             |
| config_not_object         | config.json is a list                                | CONFIG_NOT_OBJECT               |
| config_no_architectures   | no architectures                                     | CONFIG_NO_ARCHITECTURE          |
| config_field_string       | hidden_size is a string                              | CONFIG_FIELD_INVALID            |
| config_too_large          | a 5 MiB config.json                                  | FILE_TOO_LARGE                  |
| gptq                      | GPTQ quantization_config and packed qweight tensors  | QUANTIZED_CONFIG                |
| awq                       | AWQ quantization_config                              | QUANTIZED_CONFIG                |
| bitsandbytes_4bit         | bitsandbytes NF4 config and tensors                  | QUANTIZED_CONFIG                |
| bitsandbytes_8bit         | bitsandbytes 8-bit config and SCB tensors            | QUANTIZED_CONFIG                |
| compressed_tensors        | compressed-tensors config                            | QUANTIZED_CONFIG                |
| mxfp4_outside_gpt_oss     | MXFP4 declared by a Qwen2 model                      | QUANTIZED_CONFIG                |
| deepseek_fp8_wrong_blocks | DeepSeek FP8 with weight_block_size [64, 64]         | QUANTIZED_CONFIG                |
| int8_tensors_no_config    | I8 weights, nothing in config.json                   | QUANTIZED_TENSORS               |
| fp8_tensors_no_config     | F8_E4M3 weights in a Qwen2 model                     | QUANTIZED_TENSORS               |
| gguf_only                 | only a .gguf file                                    | WEIGHTS_FORMAT_UNSUPPORTED      |
| pt_only                   | only a consolidated.pth                              | WEIGHTS_FORMAT_UNSUPPORTED      |
| unsupported_architecture  | MPTForCausalLM                                       | ARCHITECTURE_UNSUPPORTED        |
| unsupported_class         | LlamaForSequenceClassification                       | ARCHITECTURE_UNSUPPORTED        |
| unlisted_size_strict      | a Qwen2 size that is not a listed base model         | BASE_MODEL_UNLISTED             |
| malicious_pickle          | pytorch_model.bin whose pickle calls os.system       | PICKLE_UNSAFE                   |
| garbage_pickle            | pytorch_model.bin holding random bytes               | PICKLE_UNREADABLE               |
| overrides_not_yaml        | modeldrop.yaml is not YAML                           | OVERRIDES_INVALID               |
| overrides_unknown_key     | modeldrop.yaml has a typo'd key                      | OVERRIDES_INVALID               |
| overrides_unknown_machine | machine_type "x9-giant"                              | MACHINE_UNKNOWN                 |
| overrides_machine_mismatch| g2-standard-24 with 1 GPU                            | MACHINE_MISMATCH                |
| overrides_machine_small   | a 32B-shaped model on one L4                         | MACHINE_TOO_SMALL               |
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from modeldrop import catalog
from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.validator import validate_folder
from tests.fixtures.safetensors_files import header_dict, write_header, write_sparse

BASE = next(b for b in catalog.base_models() if b["model"] == "Qwen2.5-0.5B")
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"
H, FF = BASE["hidden_size"], BASE["intermediate_size"]
V = 1024  # embedding rows: small keeps uploads to fake-gcs-server fast; validation ignores it
TENSORS_1 = [
    ("model.embed_tokens.weight", "BF16", [V, H]),
    ("model.layers.0.self_attn.q_proj.weight", "BF16", [H, H]),
]
TENSORS_2 = [
    ("model.layers.0.mlp.down_proj.weight", "BF16", [H, FF]),
    ("model.norm.weight", "BF16", [H]),
]


def base_config(**changes) -> dict:
    fields = {k: BASE[k] for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "vocab_size", "max_position_embeddings",
    )}  # fmt: skip
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **fields,
              "torch_dtype": "bfloat16"}  # fmt: skip
    return {**config, **changes}


def write_json(path: Path, document) -> None:
    path.write_text(json.dumps(document))


def write_valid(root: Path, tensors_1=TENSORS_1, tensors_2=TENSORS_2) -> Path:
    """A folder shaped like Qwen2.5-0.5B: two sparse shards, an index, a tokenizer."""
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "config.json", base_config())
    write_json(root / "tokenizer.json", {"version": "1.0", "model": {"type": "BPE"}})
    write_json(root / "tokenizer_config.json", {"tokenizer_class": "Qwen2Tokenizer"})
    write_sparse(root / SHARD1, tensors_1)
    write_sparse(root / SHARD2, tensors_2)
    weight_map = {n: SHARD1 for n, _, _ in tensors_1} | {n: SHARD2 for n, _, _ in tensors_2}
    write_json(root / INDEX, {"metadata": {}, "weight_map": weight_map})
    return root


def resize(path: Path, delta: int) -> None:
    os.truncate(path, path.stat().st_size + delta)


def rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    header = header_dict(TENSORS_1)
    edit(header)
    write_header(path, header, size=path.stat().st_size)


class Reducer:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def quantized(method: dict, tensors: list | None = None) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        write_json(root / "config.json", base_config(quantization_config=method))
        if tensors:
            write_sparse(root / SHARD2, tensors)
            weight_map = {n: SHARD1 for n, _, _ in TENSORS_1} | {n: SHARD2 for n, _, _ in tensors}
            write_json(root / INDEX, {"weight_map": weight_map})

    return mutate


def only(name: str, data: bytes) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        for f in (SHARD1, SHARD2, INDEX):
            (root / f).unlink()
        (root / name).write_bytes(data)

    return mutate


def overrides(text: str) -> Callable[[Path], None]:
    return lambda root: (root / "modeldrop.yaml").write_text(text)


GPTQ_TENSORS = [
    ("model.layers.0.mlp.down_proj.qweight", "I32", [FF // 8, H]),
    ("model.layers.0.mlp.down_proj.qzeros", "I32", [FF // 128, H // 8]),
    ("model.layers.0.mlp.down_proj.scales", "F16", [FF // 128, H]),
    ("model.layers.0.mlp.down_proj.g_idx", "I32", [FF]),
]
BNB4_TENSORS = [
    ("model.layers.0.mlp.down_proj.weight", "U8", [H * FF // 2, 1]),
    ("model.layers.0.mlp.down_proj.weight.absmax", "F32", [H * FF // 64]),
    ("model.layers.0.mlp.down_proj.weight.quant_map", "F32", [16]),
    ("model.layers.0.mlp.down_proj.weight.quant_state.bitsandbytes__nf4", "U8", [100]),
]
BNB8_TENSORS = [
    ("model.layers.0.mlp.down_proj.weight", "I8", [H, FF]),
    ("model.layers.0.mlp.down_proj.SCB", "F32", [H]),
]

CORPUS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing_config": (lambda r: (r / "config.json").unlink(), "CONFIG_MISSING"),
    "missing_tokenizer": (lambda r: (r / "tokenizer.json").unlink(), "TOKENIZER_MISSING"),
    "missing_tokenizer_config": (
        lambda r: (r / "tokenizer_config.json").unlink(), "TOKENIZER_CONFIG_MISSING"),
    "tokenizer_config_broken": (
        lambda r: (r / "tokenizer_config.json").write_text("[1]"), "TOKENIZER_CONFIG_INVALID"),
    "no_weights": (only("README.md", b"# hi"), "WEIGHTS_MISSING"),
    "missing_shard": (lambda r: (r / SHARD2).unlink(), "INDEX_SHARD_MISSING"),
    "shards_without_index": (lambda r: (r / INDEX).unlink(), "INDEX_MISSING"),
    "index_not_json": (lambda r: (r / INDEX).write_text("{weight_map"), "INDEX_INVALID"),
    "index_tensor_not_in_shard": (
        lambda r: write_json(r / INDEX, {"weight_map": {
            **{n: SHARD1 for n, _, _ in TENSORS_1}, **{n: SHARD2 for n, _, _ in TENSORS_2},
            "lm_head.weight": SHARD2}}),
        "INDEX_TENSOR_MISSING"),
    "truncated_shard": (lambda r: resize(r / SHARD1, -1000), "SAFETENSORS_TRUNCATED"),
    "padded_shard": (lambda r: resize(r / SHARD1, 4096), "SAFETENSORS_PADDED"),
    "empty_shard": (lambda r: (r / SHARD2).write_bytes(b""), "SAFETENSORS_TOO_SHORT"),
    "overlapping_offsets": (
        lambda r: rewrite_header(r / SHARD1, lambda h: h["model.layers.0.self_attn.q_proj.weight"]
                                 .update(data_offsets=[2, 2 + 2 * H * H])),
        "SAFETENSORS_OFFSETS_OVERLAP"),
    "offsets_gap": (
        lambda r: rewrite_header(r / SHARD1, lambda h: h["model.embed_tokens.weight"]
                                 .update(data_offsets=[0, 2 * V * H - 2], shape=[V * H - 1])),
        "SAFETENSORS_OFFSETS_GAP"),
    "header_length_bomb": (
        lambda r: (r / SHARD1).write_bytes(struct.pack("<Q", 2**62) + b"{}"),
        "SAFETENSORS_HEADER_TOO_LARGE"),
    "header_invalid_json": (
        lambda r: (r / SHARD1).write_bytes(struct.pack("<Q", 6) + b"{oops}"),
        "SAFETENSORS_HEADER_INVALID"),
    "unknown_dtype": (
        lambda r: rewrite_header(r / SHARD1, lambda h: h["model.norm.weight"
                                 if "model.norm.weight" in h else "model.embed_tokens.weight"]
                                 .update(dtype="Q4")),
        "SAFETENSORS_UNKNOWN_DTYPE"),
    "tensor_size_mismatch": (
        lambda r: rewrite_header(r / SHARD1, lambda h: h["model.embed_tokens.weight"]
                                 .update(shape=[V, H + 1])),
        "SAFETENSORS_TENSOR_SIZE_MISMATCH"),
    "config_invalid_json": (lambda r: (r / "config.json").write_text("{,}"), "CONFIG_INVALID_JSON"),
    "config_not_object": (lambda r: (r / "config.json").write_text("[]"), "CONFIG_NOT_OBJECT"),
    "config_no_architectures": (
        lambda r: write_json(r / "config.json", base_config(architectures=None)),
        "CONFIG_NO_ARCHITECTURE"),
    "config_field_string": (
        lambda r: write_json(r / "config.json", base_config(hidden_size="896")),
        "CONFIG_FIELD_INVALID"),
    "config_too_large": (
        lambda r: write_json(r / "config.json", base_config(padding="x" * 5 * 2**20)),
        "FILE_TOO_LARGE"),
    "gptq": (quantized({"quant_method": "gptq", "bits": 4, "group_size": 128}, GPTQ_TENSORS),
             "QUANTIZED_CONFIG"),
    "awq": (quantized({"quant_method": "awq", "bits": 4, "version": "gemm"}), "QUANTIZED_CONFIG"),
    "bitsandbytes_4bit": (
        quantized({"quant_method": "bitsandbytes", "load_in_4bit": True,
                   "bnb_4bit_quant_type": "nf4"}, BNB4_TENSORS),
        "QUANTIZED_CONFIG"),
    "bitsandbytes_8bit": (
        quantized({"quant_method": "bitsandbytes", "load_in_8bit": True}, BNB8_TENSORS),
        "QUANTIZED_CONFIG"),
    "compressed_tensors": (
        quantized({"quant_method": "compressed-tensors", "format": "pack-quantized"}),
        "QUANTIZED_CONFIG"),
    "mxfp4_outside_gpt_oss": (quantized({"quant_method": "mxfp4"}), "QUANTIZED_CONFIG"),
    "deepseek_fp8_wrong_blocks": (
        quantized({"quant_method": "fp8", "weight_block_size": [64, 64]}), "QUANTIZED_CONFIG"),
    "int8_tensors_no_config": (
        lambda r: write_sparse(r / SHARD2, [("model.layers.0.mlp.down_proj.weight", "I8", [H, FF]),
                                            ("model.norm.weight", "BF16", [H])]),
        "QUANTIZED_TENSORS"),
    "fp8_tensors_no_config": (
        lambda r: write_sparse(r / SHARD2, [("model.layers.0.mlp.down_proj.weight", "F8_E4M3",
                                             [H, FF]), ("model.norm.weight", "BF16", [H])]),
        "QUANTIZED_TENSORS"),
    "gguf_only": (only("model-q4_k_m.gguf", b"GGUF" + bytes(60)), "WEIGHTS_FORMAT_UNSUPPORTED"),
    "pt_only": (only("consolidated.pth", b"PK" + bytes(60)), "WEIGHTS_FORMAT_UNSUPPORTED"),
    "unsupported_architecture": (
        lambda r: write_json(r / "config.json", base_config(architectures=["MPTForCausalLM"],
                                                            model_type="mpt")),
        "ARCHITECTURE_UNSUPPORTED"),
    "unsupported_class": (
        lambda r: write_json(r / "config.json", base_config(
            architectures=["Qwen2ForSequenceClassification"])),
        "ARCHITECTURE_UNSUPPORTED"),
    "unlisted_size_strict": (
        lambda r: write_json(r / "config.json", base_config(num_hidden_layers=12)),
        "BASE_MODEL_UNLISTED"),
    "malicious_pickle": (
        only("pytorch_model.bin", pickle.dumps(Reducer(), protocol=2)), "PICKLE_UNSAFE"),
    "garbage_pickle": (only("pytorch_model.bin", os.urandom(64) + b"\xff" * 64), "PICKLE_UNREADABLE"),
    "overrides_not_yaml": (overrides("machine_spec: [unclosed"), "OVERRIDES_INVALID"),
    "overrides_unknown_key": (overrides("replica_count: 2\n"), "OVERRIDES_INVALID"),
    "overrides_unknown_machine": (
        overrides("machine_spec: {machine_type: x9-giant, accelerator_type: NVIDIA_L4, "
                  "accelerator_count: 1}\n"),
        "MACHINE_UNKNOWN"),
    "overrides_machine_mismatch": (
        overrides("machine_spec: {machine_type: g2-standard-24, accelerator_type: NVIDIA_L4, "
                  "accelerator_count: 1}\n"),
        "MACHINE_MISMATCH"),
    "overrides_machine_small": (
        lambda r: (
            write_sparse(r / SHARD2, [("model.layers.0.mlp.down_proj.weight", "BF16",
                                       [H, 16 * 2**30 // H])]),
            overrides("machine_spec: {machine_type: g2-standard-8, accelerator_type: NVIDIA_L4, "
                      "accelerator_count: 1}\n")(r),
        ),
        "MACHINE_TOO_SMALL"),
}  # fmt: skip


def test_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 25
    assert len({code for _, code in CORPUS.values()}) >= 25


def test_the_unbroken_folder_is_accepted(tmp_path):
    verdict = validate_folder(LocalFolder(write_valid(tmp_path / "ok")))
    assert verdict.accepted, verdict.as_dict()
    assert verdict.matched_base == "Qwen2.5-0.5B"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_folder_is_rejected_with_its_code(tmp_path, name):
    mutate, code = CORPUS[name]
    root = write_valid(tmp_path / name)
    mutate(root)
    verdict = validate_folder(LocalFolder(root), BasePolicy.STRICT)
    data = verdict.as_dict()
    assert data["verdict"] == "rejected"
    codes = [f["code"] for f in data["findings"] if f["severity"] == "error"]
    assert code in codes, data["findings"]
    finding = next(f for f in data["findings"] if f["code"] == code)
    assert len(finding["message"]) > 30
    json.dumps(data)  # the verdict is always serialisable


def test_operator_default_machine_is_used_when_it_fits_else_the_recommendation(tmp_path):
    from modeldrop.domain.findings import MachineSpec

    folder = LocalFolder(write_valid(tmp_path / "ok"))
    fits = MachineSpec("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1)
    verdict = validate_folder(folder, BasePolicy.STRICT, fits)
    assert verdict.recommended_machine == fits and verdict.accepted
    assert "MACHINE_DEFAULT" in [f.code for f in verdict.findings]
    odd = MachineSpec("g2-standard-48", "NVIDIA_L4", 4)  # 14 heads do not split over 4 GPUs
    verdict = validate_folder(folder, BasePolicy.STRICT, odd)
    assert verdict.accepted and verdict.recommended_machine != odd
    assert "MACHINE_DEFAULT_UNUSABLE" in [f.code for f in verdict.findings]
