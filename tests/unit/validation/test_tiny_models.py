"""Real tiny models saved by transformers validate, and their counts match torch's."""

from __future__ import annotations

import pytest

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.validator import validate_folder

pytest.importorskip("torch", reason="needs the local-serving extra (torch, transformers)")
from modeldrop.local.tiny_model import FAMILIES, build_tiny_model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    folders = {family: build_tiny_model(root / family, family) for family in FAMILIES}
    folders["llama-sharded"] = build_tiny_model(root / "llama-sharded", "llama", shard_kb=100)
    return folders


@pytest.mark.parametrize("name", [*FAMILIES, "llama-sharded"])
def test_tiny_model_is_accepted_by_family_policy(tiny_models, name):
    import torch
    from transformers import AutoModelForCausalLM

    verdict = validate_folder(LocalFolder(tiny_models[name]), BasePolicy.FAMILY)
    assert verdict.accepted, verdict.as_dict()["findings"]
    model = AutoModelForCausalLM.from_pretrained(tiny_models[name], dtype=torch.bfloat16)
    assert verdict.parameters == model.num_parameters()  # tied embeddings counted once
    assert verdict.recommended_machine is not None


def test_sharded_tiny_model_has_an_index_and_reads_two_ranges_at_most_per_shard(tiny_models):
    folder = LocalFolder(tiny_models["llama-sharded"])
    shards = [f for f in folder.list_files() if f.name.endswith(".safetensors")]
    assert len(shards) > 1
    validate_folder(folder, BasePolicy.FAMILY)
    # config, tokenizer_config, generation_config, tokenizer.json, chat_template.jinja, the index
    small_files = 6
    assert folder.reads <= 2 * len(shards) + small_files


def test_tiny_model_is_rejected_by_strict_policy_as_unlisted(tiny_models):
    verdict = validate_folder(LocalFolder(tiny_models["llama"]), BasePolicy.STRICT)
    assert [f.code for f in verdict.errors] == ["BASE_MODEL_UNLISTED"]
