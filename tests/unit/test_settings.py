"""Settings come from one table of environment variables."""

from __future__ import annotations

from dataclasses import fields

from modeldrop.settings import SETTINGS, Settings


def test_every_setting_has_one_variable_and_defaults_parse():
    assert {f.name for f in fields(Settings)} == set(SETTINGS)
    assert len({s.env for s in SETTINGS.values()}) == len(SETTINGS)
    defaults = Settings.from_env({})
    assert defaults.root_prefix == "models/"
    assert defaults.settle_seconds == 10.0
    assert defaults.api_tokens == ()


def test_values_are_parsed():
    settings = Settings.from_env({
        "MODELDROP_ROOT_PREFIX": "/uploads", "MODELDROP_SETTLE_SECONDS": "0",
        "MODELDROP_VERTEX_ANONYMOUS": "true", "MODELDROP_API_TOKENS": "a, b,,c",
    })  # fmt: skip
    assert settings.root_prefix == "uploads/"
    assert settings.settle_seconds == 0.0
    assert settings.vertex_anonymous is True
    assert settings.api_tokens == ("a", "b", "c")
