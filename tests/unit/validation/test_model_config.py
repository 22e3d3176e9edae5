"""config.json reader: the fields validation needs, and only typed errors on bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldrop.validation.model_config import ConfigError, parse_config

QUANT_KEYS = ("quantization_config", "compression_config")
LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
}


def _parse(document) -> object:
    return parse_config(json.dumps(document).encode(), QUANT_KEYS)


def test_reads_architecture_and_fields():
    config = _parse(LLAMA)
    assert (config.architecture, config.model_type) == ("LlamaForCausalLM", "llama")
    assert config.fields["num_key_value_heads"] == 8
    assert config.quantization is None


def test_multimodal_fields_come_from_text_config():
    document = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {"hidden_size": 2560, "num_hidden_layers": 34, "intermediate_size": 10240},
        "vision_config": {"hidden_size": 1152, "num_hidden_layers": 27},
    }
    assert _parse(document).fields == {
        "hidden_size": 2560,
        "num_hidden_layers": 34,
        "intermediate_size": 10240,
    }


def test_zero_valued_fields_are_kept():
    assert _parse({**LLAMA, "first_k_dense_replace": 0}).fields["first_k_dense_replace"] == 0


def test_quantization_config_is_found():
    config = _parse({**LLAMA, "quantization_config": {"quant_method": "gptq", "bits": 4}})
    assert config.quantization == {"quant_method": "gptq", "bits": 4}
    assert config.quantization_key == "quantization_config"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{", "CONFIG_INVALID_JSON"),
        (b"\xff\xfe{}", "CONFIG_INVALID_JSON"),
        (b"[1, 2]", "CONFIG_NOT_OBJECT"),
        (b'"llama"', "CONFIG_NOT_OBJECT"),
        (b"{}", "CONFIG_NO_ARCHITECTURE"),
        (
            json.dumps({**LLAMA, "architectures": "LlamaForCausalLM"}).encode(),
            "CONFIG_NO_ARCHITECTURE",
        ),
        (json.dumps({**LLAMA, "model_type": None}).encode(), "CONFIG_NO_MODEL_TYPE"),
        (json.dumps({**LLAMA, "hidden_size": "4096"}).encode(), "CONFIG_FIELD_INVALID"),
        (json.dumps({**LLAMA, "num_hidden_layers": True}).encode(), "CONFIG_FIELD_INVALID"),
        (
            json.dumps({k: v for k, v in LLAMA.items() if k != "hidden_size"}).encode(),
            "CONFIG_FIELD_MISSING",
        ),
        (b"[" * 50_000 + b"]" * 50_000, "CONFIG_INVALID_JSON"),
        (b"{" * 50_000, "CONFIG_INVALID_JSON"),
    ],
)
def test_bad_configs_raise_typed_errors(data, code):
    with pytest.raises(ConfigError) as caught:
        parse_config(data, QUANT_KEYS)
    assert caught.value.code == code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
config_like = st.fixed_dictionaries(
    {},
    optional={
        "architectures": st.lists(st.text(max_size=12), max_size=2) | json_values,
        "model_type": st.text(max_size=8) | json_values,
        "hidden_size": st.integers(min_value=-3, max_value=10**6) | json_values,
        "num_hidden_layers": st.integers(min_value=-3, max_value=200) | json_values,
        "text_config": json_values,
        "quantization_config": json_values,
    },
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(config_like, json_values))
def test_arbitrary_json_only_raises_config_errors(document):
    try:
        config = parse_config(json.dumps(document).encode(), QUANT_KEYS)
    except ConfigError as exc:
        assert exc.code.startswith("CONFIG_")
    else:
        assert isinstance(config.fields["hidden_size"], int)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_only_raise_config_errors(data):
    try:
        parse_config(data, QUANT_KEYS)
    except ConfigError as exc:
        assert exc.code.startswith("CONFIG_")
