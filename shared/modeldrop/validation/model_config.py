"""Read config.json into the fields validation needs; every problem is a typed ConfigError."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modeldrop.domain.findings import excerpt
from modeldrop.errors import InputError

ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "moe_intermediate_size",
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "n_shared_experts",
    "first_k_dense_replace",
    "vocab_size",
)
REQUIRED_FIELDS = ("hidden_size", "num_hidden_layers")
# Counts that are 0 in some real configs (no shared experts, no dense prefix); every other field
# is a dimension or count of at least 1.
MAY_BE_ZERO = frozenset(
    {"n_shared_experts", "first_k_dense_replace", "num_experts", "num_local_experts"}
)
MAX_FIELD_VALUE = 2**24  # 16,777,216: well above any real dimension, vocabulary or layer count
MAX_NAME_CHARS = 128  # a class or model_type name is a short identifier
TEXT_CONFIG_KEYS = ("text_config", "llm_config", "language_config")


class ConfigError(InputError):
    """config.json cannot be used."""


@dataclass(frozen=True)
class ModelConfig:
    """What validation reads from config.json.

    `fields` holds the architecture-defining integers, taken from the text sub-config for
    multimodal models (Llama 4, Gemma 3) and from the top level otherwise.
    """

    architecture: str
    model_type: str
    fields: dict[str, int]
    quantization: dict[str, Any] | None
    quantization_key: str | None
    raw: dict[str, Any]


SAVE_HINT = "Use the config.json written by save_pretrained() for the fine-tuned model."


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"config.json is not valid UTF-8 JSON ({type(exc).__name__}: {str(exc)[:120]})",
            SAVE_HINT,
            code="CONFIG_INVALID_JSON",
        ) from None


def _int_field(source: dict[str, Any], key: str) -> int | None:
    value = source.get(key)
    if value is None:
        return None
    low = 0 if key in MAY_BE_ZERO else 1
    if type(value) is not int or not low <= value <= MAX_FIELD_VALUE:
        raise ConfigError(
            f"config.json field {key!r} is {excerpt(value)}; expected an integer from {low} to "
            f"{MAX_FIELD_VALUE}",
            SAVE_HINT,
            code="CONFIG_FIELD_INVALID",
        )
    return value


def _name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


def parse_config(data: bytes, quantization_keys: tuple[str, ...] = ()) -> ModelConfig:
    """Parse config.json bytes; raise ConfigError on anything unusable."""
    document = _loads(data)
    if not isinstance(document, dict):
        raise ConfigError(
            f"config.json holds a JSON {type(document).__name__}, not an object",
            SAVE_HINT,
            code="CONFIG_NOT_OBJECT",
        )
    architectures = document.get("architectures")
    model_type = document.get("model_type")
    if not (isinstance(architectures, list) and architectures and _name(architectures[0])):
        raise ConfigError(
            f"config.json 'architectures' is {excerpt(architectures)}; expected a list naming "
            f'the model class (at most {MAX_NAME_CHARS} characters), such as ["LlamaForCausalLM"]',
            SAVE_HINT,
            code="CONFIG_NO_ARCHITECTURE",
        )
    if not _name(model_type):
        raise ConfigError(
            f"config.json 'model_type' is {excerpt(model_type)}; expected a short string such "
            'as "llama"',
            SAVE_HINT,
            code="CONFIG_NO_MODEL_TYPE",
        )
    text = next((document[k] for k in TEXT_CONFIG_KEYS if isinstance(document.get(k), dict)), None)
    source = {**document, **text} if text else document
    fields = {
        key: value for key in ARCHITECTURE_FIELDS if (value := _int_field(source, key)) is not None
    }
    missing = [key for key in REQUIRED_FIELDS if key not in fields]
    if missing:
        raise ConfigError(
            f"config.json lacks {', '.join(missing)}, needed to identify the architecture",
            SAVE_HINT,
            code="CONFIG_FIELD_MISSING",
        )
    quantization, quantization_key = None, None
    for key in quantization_keys:
        for scope in (document, text or {}):
            if scope.get(key) is not None:
                quantization_key = key
                value = scope[key]
                quantization = value if isinstance(value, dict) else {"quant_method": str(value)}
                break
        if quantization is not None:
            break
    return ModelConfig(
        architectures[0], str(model_type), fields, quantization, quantization_key, document
    )
