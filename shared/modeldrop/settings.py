"""Settings from the environment: one table says every variable the code reads."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from modeldrop.errors import UsageError


class SettingError(UsageError):
    """An environment variable holds a value its setting cannot use."""

    code = "BAD_SETTING"


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


MACHINE_SPEC_FIELDS = {"machine_type": str, "accelerator_type": str, "accelerator_count": int}


def _machine_spec(text: str) -> dict[str, Any] | None:
    """A JSON machine spec with exactly its three fields, or None when empty."""
    value = json.loads(text) if text.strip() else None
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and set(value) == set(MACHINE_SPEC_FIELDS)
        and all(type(value[k]) is kind for k, kind in MACHINE_SPEC_FIELDS.items())
        and value["accelerator_count"] >= 1
    ):
        raise ValueError(
            f"expected a JSON object with exactly {', '.join(MACHINE_SPEC_FIELDS)} "
            f"(accelerator_count a positive integer), got {text[:200]!r}"
        )
    return value


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


REGION_PATTERN = re.compile(r"[a-z]+-[a-z]+[0-9]+")


def _regions(text: str) -> tuple[str, ...]:
    """Comma-separated Vertex AI regions, first preferred; each one a region name, once."""
    regions = _list(text)
    bad = [r for r in regions if not REGION_PATTERN.fullmatch(r)]
    if bad:
        raise ValueError(f"expected region names such as us-central1, not {bad[0][:64]!r}")
    if len(set(regions)) != len(regions):
        raise ValueError(f"a region is listed twice in {text[:200]!r}")
    return regions


def _tokens(text: str) -> tuple[str, ...]:
    """Comma-separated tokens; empty means none, but a value holding no token is refused: it
    would turn bearer tokens off without saying so."""
    tokens = _list(text)
    if text and not tokens:
        raise ValueError(
            f"it is set to {text!r}, which holds no token, so bearer tokens would be off; put "
            "one or more tokens in it (comma separated), or leave it empty for none"
        )
    return tokens


def _base_url(text: str) -> str:
    """An absolute http(s) URL without its trailing '/', or '' for none."""
    url = text.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected an absolute URL such as https://api.example.com, not {text!r}")
    return url


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


MAX_SECONDS = 366 * 24 * 3600


def _seconds(text: str) -> int:
    """A whole number of seconds, 0 up to a year."""
    if not re.fullmatch(r"\d{1,9}", text.strip()) or int(text) > MAX_SECONDS:
        raise ValueError(f"expected whole seconds from 0 to {MAX_SECONDS}, not {text[:64]!r}")
    return int(text)


MAX_PEM_BYTES = 64 * 1024


def _pem(text: str) -> str:
    """PEM certificates (or '' for none)."""
    text = text.strip()
    if text and ("-----BEGIN CERTIFICATE-----" not in text or len(text) > MAX_PEM_BYTES):
        raise ValueError(f"expected PEM certificates (at most {MAX_PEM_BYTES} bytes)")
    return text


def _dollars(text: str) -> Fraction | None:
    """A positive amount of US dollars such as 25 or 12.50 (exact), or None when empty."""
    if not text.strip():
        return None
    if not re.fullmatch(r"\d{1,9}(\.\d{1,4})?", text.strip()):
        raise ValueError(f"expected an amount of dollars such as 25 or 12.50, not {text[:64]!r}")
    value = Fraction(text.strip())
    if value <= 0:
        raise ValueError(f"expected a positive amount, not {text[:64]!r}")
    return value


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    parse: Callable[[str], Any] = str
    help: str = ""


# field name -> where it comes from. Terraform sets every one of these (tests check it).
SETTINGS: dict[str, Setting] = {
    "project": Setting("GOOGLE_CLOUD_PROJECT", "modeldrop-local", help="Google Cloud project id"),
    "region": Setting("MODELDROP_REGION", "us-central1", help="Vertex AI region"),
    "regions": Setting(
        "MODELDROP_REGIONS",
        "",
        _regions,
        "Vertex AI regions a deploy may land in, first preferred (comma separated; empty: "
        "MODELDROP_REGION alone)",
    ),
    "bucket": Setting("MODELDROP_BUCKET", "modeldrop-models", help="bucket users upload to"),
    "root_prefix": Setting("MODELDROP_ROOT_PREFIX", "models/", help="model folders live here"),
    "completion_mode": Setting(
        "MODELDROP_COMPLETION_MODE", "auto", help="auto: decide from the files; marker: wait"
    ),
    "marker_name": Setting("MODELDROP_MARKER", "_READY", help="marker object in marker mode"),
    "settle_seconds": Setting(
        "MODELDROP_SETTLE_SECONDS", "10", float, "quiet time before a complete folder is used"
    ),
    "base_policy": Setting(
        "MODELDROP_BASE_POLICY", "strict", help="strict: listed base models; family: any size"
    ),
    "validated_topic": Setting("MODELDROP_VALIDATED_TOPIC", "modeldrop-validated"),
    "events_topic": Setting("MODELDROP_EVENTS_TOPIC", "modeldrop-events"),
    "collection": Setting("MODELDROP_COLLECTION", "deployments", help="Firestore collection"),
    "lease_seconds": Setting(
        "MODELDROP_LEASE_SECONDS", "600", float, "a deploy claim older than this is taken over"
    ),
    "vertex_api_endpoint": Setting(
        "MODELDROP_VERTEX_API_ENDPOINT", "", help="override, e.g. http://127.0.0.1:8090 (emulator)"
    ),
    "logging_api_endpoint": Setting(
        "MODELDROP_LOGGING_API_ENDPOINT",
        "https://logging.googleapis.com",
        _base_url,
        "Cloud Logging API the serving logs are read from (the local stack: the Vertex AI "
        "emulator, which answers entries:list too)",
    ),
    "vertex_transport": Setting("MODELDROP_VERTEX_TRANSPORT", "rest", help="rest or grpc"),
    "vertex_anonymous": Setting(
        "MODELDROP_VERTEX_ANONYMOUS", "false", _bool, "anonymous credentials (emulator only)"
    ),
    "upstream_timeout": Setting(
        "MODELDROP_UPSTREAM_TIMEOUT", "300", float, "seconds to wait for a model's answer"
    ),
    "api_tokens": Setting(
        "MODELDROP_API_TOKENS", "", _tokens, "optional bearer tokens for the api (comma separated)"
    ),
    "api_base_url": Setting(
        "MODELDROP_API_BASE_URL",
        "",
        _base_url,
        "links in api answers start with this URL (empty: links are paths on the api)",
    ),
    "max_body_bytes": Setting("MODELDROP_MAX_BODY_BYTES", "1048576", int),
    "default_machine_spec": Setting(
        "MODELDROP_DEFAULT_MACHINE_SPEC",
        "",
        _machine_spec,
        'JSON {"machine_type", "accelerator_type", "accelerator_count"} used instead of the '
        "recommendation when it fits (a folder's modeldrop.yaml still wins)",
    ),
    "psc_project_allowlist": Setting(
        "MODELDROP_PSC_PROJECT_ALLOWLIST",
        "",
        _list,
        "deploy private Private Service Connect endpoints for these projects (comma separated)",
    ),
    "psc_network": Setting(
        "MODELDROP_PSC_NETWORK",
        "",
        help="VPC network of private endpoints' PSC endpoints (a name in the project, or "
        "projects/P/global/networks/N)",
    ),
    "psc_subnetwork": Setting(
        "MODELDROP_PSC_SUBNETWORK",
        "",
        help="subnetwork their internal addresses come from (a name, the same in every region)",
    ),
    "psc_port": Setting(
        "MODELDROP_PSC_PORT", "443", _positive_int, "port the PSC endpoints are queried on"
    ),
    "psc_ca_certificate": Setting(
        "MODELDROP_PSC_CA_CERT",
        "",
        _pem,
        "PEM of the certificate Vertex AI's PSC endpoints present (self-signed, "
        "*.prediction.p.vertexai.goog), trusted for those connections only",
    ),
    "compute_api_endpoint": Setting(
        "MODELDROP_COMPUTE_API_ENDPOINT",
        "https://compute.googleapis.com",
        _base_url,
        "Compute Engine API that PSC addresses and forwarding rules are made with (the local "
        "stack: the Vertex AI emulator)",
    ),
    "record_cache_seconds": Setting(
        "MODELDROP_RECORD_CACHE_SECONDS", "5", float, "the api reuses a DEPLOYED record this long"
    ),
    "publish_timeout": Setting(
        "MODELDROP_PUBLISH_TIMEOUT", "30", float, "seconds to wait for Pub/Sub to take a message"
    ),
    "max_attempts": Setting(
        "MODELDROP_MAX_ATTEMPTS", "5", _positive_int, "tries of one step before it ends FAILED"
    ),
    "max_hourly_usd": Setting(
        "MODELDROP_MAX_HOURLY_USD",
        "",
        _dollars,
        "cap on the estimated hourly cost of the running deployments (empty: no cap)",
    ),
    "retire_after_seconds": Setting(
        "MODELDROP_RETIRE_AFTER_SECONDS",
        "3600",
        _seconds,
        "a revision replaced as its model's serving one keeps its endpoint this long",
    ),
    "idle_undeploy_seconds": Setting(
        "MODELDROP_IDLE_UNDEPLOY_SECONDS",
        "0",
        _seconds,
        "undeploy a deployment without a proxied request for this long (0: never)",
    ),
}


@dataclass(frozen=True)
class Settings:
    project: str
    region: str
    regions: tuple[str, ...]
    bucket: str
    root_prefix: str
    completion_mode: str
    marker_name: str
    settle_seconds: float
    base_policy: str
    validated_topic: str
    events_topic: str
    collection: str
    lease_seconds: float
    vertex_api_endpoint: str
    logging_api_endpoint: str
    vertex_transport: str
    vertex_anonymous: bool
    upstream_timeout: float
    api_tokens: tuple[str, ...]
    api_base_url: str
    max_body_bytes: int
    default_machine_spec: dict[str, Any] | None
    psc_project_allowlist: tuple[str, ...]
    psc_network: str
    psc_subnetwork: str
    psc_port: int
    psc_ca_certificate: str
    compute_api_endpoint: str
    record_cache_seconds: float
    publish_timeout: float
    max_attempts: int
    max_hourly_usd: Fraction | None
    retire_after_seconds: int
    idle_undeploy_seconds: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {name: _parse(setting, env) for name, setting in SETTINGS.items()}
        values["root_prefix"] = values["root_prefix"].strip("/") + "/"
        values["regions"] = allowed_regions(env)
        return cls(**values)


def allowed_regions(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """MODELDROP_REGIONS, else MODELDROP_REGION alone, without reading the other settings."""
    env = os.environ if environ is None else environ
    return _parse(SETTINGS["regions"], env) or (_parse(SETTINGS["region"], env),)


def _parse(setting: Setting, env: Mapping[str, str]) -> Any:
    """The setting's value; SettingError, naming the variable, for a value it cannot use."""
    try:
        return setting.parse(env.get(setting.env, setting.default))
    except ValueError as exc:
        raise SettingError(
            f"{setting.env} cannot be used: {exc}.",
            f"Fix or unset {setting.env}" + (f": {setting.help}." if setting.help else "."),
        ) from exc
