"""Settings come from one table of environment variables."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from modeldrop.settings import SETTINGS, SettingError, Settings


def test_every_setting_has_one_variable_and_defaults_parse():
    assert {f.name for f in fields(Settings)} == set(SETTINGS)
    assert len({s.env for s in SETTINGS.values()}) == len(SETTINGS)
    defaults = Settings.from_env({})
    assert defaults.root_prefix == "models/"
    assert defaults.settle_seconds == 10.0
    assert defaults.api_tokens == ()


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "MODELDROP_ROOT_PREFIX": "/uploads",
            "MODELDROP_SETTLE_SECONDS": "0",
            "MODELDROP_VERTEX_ANONYMOUS": "true",
            "MODELDROP_API_TOKENS": "a, b,,c",
        }
    )
    assert settings.root_prefix == "uploads/"
    assert settings.settle_seconds == 0.0
    assert settings.vertex_anonymous is True
    assert settings.api_tokens == ("a", "b", "c")


@pytest.mark.parametrize("value", [",", " ", " , ,", "\t"])
def test_api_tokens_set_but_holding_no_token_is_refused(value):
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"MODELDROP_API_TOKENS": value})
    error = caught.value
    assert error.code == "BAD_SETTING" and error.message.startswith("MODELDROP_API_TOKENS ")
    assert repr(value) in error.message and "holds no token" in error.message
    assert "one or more tokens" in error.message and error.hint


def test_api_tokens_unset_or_empty_mean_none():
    assert Settings.from_env({}).api_tokens == ()
    assert Settings.from_env({"MODELDROP_API_TOKENS": ""}).api_tokens == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("  ", ""),
        ("https://api.example.com/", "https://api.example.com"),
        ("http://127.0.0.1:8080/modeldrop", "http://127.0.0.1:8080/modeldrop"),
    ],
)
def test_api_base_url(value, expected):
    assert Settings.from_env({"MODELDROP_API_BASE_URL": value}).api_base_url == expected


@pytest.mark.parametrize(
    "value", ["api.example.com", "/v1", "ftp://host", "https://", "https://h/?a=1", "http://[::1"]
)
def test_api_base_url_must_be_an_absolute_http_url(value):
    with pytest.raises(SettingError, match="MODELDROP_API_BASE_URL cannot be used"):
        Settings.from_env({"MODELDROP_API_BASE_URL": value})


def test_a_value_a_setting_cannot_parse_names_its_variable():
    with pytest.raises(SettingError, match=r"MODELDROP_MAX_BODY_BYTES cannot be used: .*'lots'"):
        Settings.from_env({"MODELDROP_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_attempts_must_be_a_positive_integer(value):
    with pytest.raises(SettingError, match="MODELDROP_MAX_ATTEMPTS cannot be used"):
        Settings.from_env({"MODELDROP_MAX_ATTEMPTS": value})


def test_the_api_function_does_not_start_with_an_empty_token_list():
    """Read at import, as functions-framework loads the source: the instance fails to start."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    functions = Path(__file__).resolve().parents[2] / "functions"
    code = "import api"
    env = {**os.environ, "MODELDROP_API_TOKENS": " , "}
    failed = subprocess.run(
        [sys.executable, "-c", code], cwd=functions, env=env, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "MODELDROP_API_TOKENS cannot be used" in failed.stderr
    env["MODELDROP_API_TOKENS"] = "secret-1"
    started = subprocess.run([sys.executable, "-c", code], cwd=functions, env=env)
    assert started.returncode == 0


def test_default_machine_spec_is_checked_when_read():
    spec = {
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    env = {"MODELDROP_DEFAULT_MACHINE_SPEC": json.dumps(spec)}
    assert Settings.from_env(env).default_machine_spec == spec
    assert Settings.from_env({}).default_machine_spec is None
    for bad in ({**spec, "gpus": 2}, {**spec, "accelerator_count": "1"}, [spec], "x"):
        with pytest.raises(SettingError, match="MODELDROP_DEFAULT_MACHINE_SPEC cannot be used"):
            Settings.from_env({"MODELDROP_DEFAULT_MACHINE_SPEC": json.dumps(bad)})


def test_regions_default_to_the_region_alone():
    assert Settings.from_env({}).regions == ("us-central1",)
    assert Settings.from_env({"MODELDROP_REGION": "europe-west4"}).regions == ("europe-west4",)
    env = {"MODELDROP_REGION": "us-central1", "MODELDROP_REGIONS": "us-east4, europe-west4"}
    assert Settings.from_env(env).regions == ("us-east4", "europe-west4")


@pytest.mark.parametrize("value", ["US-CENTRAL1", "us-central1,us-central1", "central"])
def test_regions_must_be_distinct_region_names(value):
    with pytest.raises(SettingError, match="MODELDROP_REGIONS cannot be used"):
        Settings.from_env({"MODELDROP_REGIONS": value})
