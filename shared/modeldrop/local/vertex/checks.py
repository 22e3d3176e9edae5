"""Check a DeployRequest JSON body the way Vertex AI does, before anything is created.

The body is parsed with the SDK's own v1beta1 protobuf type, so the emulator accepts exactly
what the real REST front end accepts: camelCase or snake_case field names, enums as integers
(the SDK sends `$alt=json;enum-encoding=int`) or names, and nothing else (unknown fields are a
400). Then the semantic checks: destination, model source, machine spec against modeldrop's
machine catalog, replica counts and Scale To Zero, user-chosen ids, Private Service Connect.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from modeldrop.catalog import machine_catalog
from modeldrop.domain.deployment import location_name
from modeldrop.local.vertex.errors import RpcError, invalid

# With no deploy_config, Model Garden picks a machine; the emulator uses the seed's example.
DEFAULT_MACHINE = ("g2-standard-12", "NVIDIA_L4", 1)
DISPLAY_NAME_MAX = 128
# CreateEndpointRequest.endpoint_id: a letter, then up to 62 of [a-z0-9-], ending in a letter or
# digit; or a number of up to 9 digits without a leading zero.
_ENDPOINT_ID = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8}")
# UploadModelRequest.model_id: up to 63 of [a-z0-9_-], not starting with a digit or hyphen.
_MODEL_ID = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
_PATH_PART = re.compile(r"[a-z0-9][a-z0-9-]{0,62}", re.IGNORECASE)
# Scale To Zero (Preview): Google's "Scale inference nodes by using autoscaling", section "Scale
# To Zero" (https://cloud.google.com/vertex-ai/docs/predictions/autoscaling#scale-to-zero, now
# https://docs.cloud.google.com/gemini-enterprise-agent-platform/machine-learning/predictions/
# autoscaling#scale-to-zero): min_replica_count 0 enables it (v1beta1); initial_replica_count is
# 1 to max_replica_count (default 1); scale_to_zero_spec.min_scaleup_period and
# idle_scaledown_period are 300 s to 28800 s (default 3600 s); not on shared public endpoints.
# The SDK agrees: aiplatform_v1beta1 types/machine_resources.py (ScaleToZeroSpec [MinValue=300]
# [MaxValue=28800], initial_replica_count), and aiplatform/preview/models.py, which refuses
# the periods and initial_replica_count unless min_replica_count is 0.
STZ_MIN_S, STZ_MAX_S, STZ_DEFAULT_S = 300, 28800, 3600


@dataclass(frozen=True)
class MachineSpec:
    machine_type: str
    accelerator_type: str  # enum name, e.g. NVIDIA_L4
    accelerator_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "machineType": self.machine_type,
            "acceleratorType": self.accelerator_type,
            "acceleratorCount": self.accelerator_count,
        }


@dataclass(frozen=True)
class ScaleToZero:
    """A deployed model's Scale To Zero settings as given; None: not set (the default applies)."""

    initial_replicas: int | None = None
    min_scaleup_s: float | None = None
    idle_scaledown_s: float | None = None

    @property
    def replicas(self) -> int:
        """The replicas it scales up to (initial_replica_count)."""
        return self.initial_replicas or 1

    @property
    def min_scaleup(self) -> float:
        return STZ_DEFAULT_S if self.min_scaleup_s is None else self.min_scaleup_s

    @property
    def idle_scaledown(self) -> float:
        return STZ_DEFAULT_S if self.idle_scaledown_s is None else self.idle_scaledown_s

    def to_json(self) -> dict[str, Any]:
        """dedicatedResources' initialReplicaCount and scaleToZeroSpec, as the request set them."""
        body: dict[str, Any] = {}
        if self.initial_replicas:
            body["initialReplicaCount"] = self.initial_replicas
        spec = {
            name: f"{seconds:g}s"
            for name, seconds in (
                ("minScaleupPeriod", self.min_scaleup_s),
                ("idleScaledownPeriod", self.idle_scaledown_s),
            )
            if seconds is not None
        }
        if spec:
            body["scaleToZeroSpec"] = spec
        return body


@dataclass(frozen=True)
class DeploySpec:
    """A checked deploy: everything the emulator needs, with defaults filled in."""

    project: str
    location: str
    gcs_uri: str
    model_display_name: str
    endpoint_display_name: str
    machine: MachineSpec
    min_replicas: int = 1
    max_replicas: int = 1
    model_user_id: str | None = None
    endpoint_user_id: str | None = None
    dedicated_endpoint: bool = True
    psc: dict[str, Any] | None = None
    spot: bool = False
    scale_to_zero: ScaleToZero | None = None  # min_replica_count 0
    system_labels: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # fields accepted but not emulated (logged)

    @property
    def parent(self) -> str:
        return location_name(self.project, self.location)

    @property
    def starting_replicas(self) -> int:
        """The replicas the deploy starts (and holds GPUs for)."""
        return self.scale_to_zero.replicas if self.scale_to_zero else self.min_replicas


@cache
def _deploy_request_type() -> Any:
    from google.cloud.aiplatform_v1beta1.types import model_garden_service

    return model_garden_service.DeployRequest.pb()


@cache
def accelerator_names() -> dict[int, str]:
    """AcceleratorType enum numbers -> names, from the SDK (so new GPUs appear by themselves)."""
    from google.cloud.aiplatform_v1beta1.types import accelerator_type

    enum: Any = accelerator_type.AcceleratorType  # a proto-plus enum: iterable, typed loosely
    return {member.value: member.name for member in enum}


def requested_accelerator(body: Any) -> str | None:
    """The accelerator a deploy body asks for, by name (an injected 429 names its quota)."""
    try:
        spec = body.get("deployConfig", body.get("deploy_config"))
        spec = spec.get("dedicatedResources", spec.get("dedicated_resources"))
        spec = spec.get("machineSpec", spec.get("machine_spec"))
        value = spec.get("acceleratorType", spec.get("accelerator_type"))
    except AttributeError:
        return None
    if isinstance(value, int):
        return accelerator_names().get(value)
    return value if isinstance(value, str) else None


@cache
def machines() -> dict[str, tuple[str, int]]:
    """Known machine types -> (accelerator name, accelerator count), from the catalog."""
    return {
        m["machine_type"]: (m["accelerator_type"], m["accelerator_count"])
        for m in machine_catalog()["machines"]
    }


def parse_deploy_request(body: Any) -> Any:
    """The body as a v1beta1 DeployRequest protobuf, or 400 as the REST front end answers."""
    from google.protobuf import json_format

    if not isinstance(body, dict):
        raise invalid(
            f"Invalid JSON payload received. Expected a DeployRequest object, got {_kind(body)}."
        )
    message = _deploy_request_type()()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise invalid(f"Invalid JSON payload received. {str(exc).splitlines()[0]}") from exc
    return message


def check_deploy_request(body: Any, project: str, location: str) -> DeploySpec:
    """A DeploySpec, or RpcError 400 naming the field, what was found and what to do."""
    for label, part in (("project", project), ("location", location)):
        if not _PATH_PART.fullmatch(part):
            raise invalid(f"Invalid {label} {part!r} in the request URL.")
    request = parse_deploy_request(body)
    parent = f"projects/{project}/locations/{location}"
    if request.destination and request.destination != parent:
        raise invalid(
            f"destination {request.destination!r} does not match the request URL ({parent}); "
            f"send the request to /v1beta1/{request.destination}:deploy or fix destination."
        )
    gcs_uri = _model_source(request)
    ignored = []
    model_config = request.model_config
    if model_config.HasField("container_spec"):
        ignored.append("model_config.container_spec")
    endpoint_config = request.endpoint_config
    if endpoint_config.dedicated_endpoint_enabled and endpoint_config.dedicated_endpoint_disabled:
        raise invalid(
            "endpoint_config.dedicated_endpoint_enabled and dedicated_endpoint_disabled are both "
            "true; set at most one."
        )
    default_name = gcs_uri.rstrip("/").rsplit("/", 1)[-1] or "custom-model"
    resources = _resources(request.deploy_config)
    psc = _psc(endpoint_config)
    if resources.get("scale_to_zero"):
        _check_not_public(endpoint_config, psc)
    return DeploySpec(
        project=project,
        location=location,
        gcs_uri=gcs_uri,
        model_display_name=_display_name(
            "model_config.model_display_name", model_config.model_display_name, default_name
        ),
        endpoint_display_name=_display_name(
            "endpoint_config.endpoint_display_name",
            endpoint_config.endpoint_display_name,
            f"{default_name}-endpoint",
        ),
        model_user_id=_user_id(
            "model_config.model_user_id", model_config.model_user_id, _MODEL_ID, _MODEL_ID_RULE
        ),
        endpoint_user_id=_user_id(
            "endpoint_config.endpoint_user_id",
            endpoint_config.endpoint_user_id,
            _ENDPOINT_ID,
            _ENDPOINT_ID_RULE,
        ),
        dedicated_endpoint=not endpoint_config.dedicated_endpoint_disabled,
        psc=psc,
        **resources,
        system_labels=dict(request.deploy_config.system_labels),
        ignored=tuple(ignored),
    )


_MODEL_ID_RULE = "up to 63 lowercase letters, digits, '_' or '-', not starting with a digit or '-'"
_ENDPOINT_ID_RULE = (
    "a lowercase letter followed by up to 62 lowercase letters, digits or '-', ending in a "
    "letter or digit (or a number of up to 9 digits)"
)


def _kind(value: Any) -> str:
    return "an array" if isinstance(value, list) else json.dumps(value)[:40]


def _model_source(request: Any) -> str:
    source = request.WhichOneof("artifacts")
    if source in ("publisher_model_name", "hugging_face_model_id"):
        raise RpcError(
            f"The local Vertex AI emulator deploys custom weights only; {source} is not "
            "emulated. Send custom_model.gcs_uri with the model folder.",
            code="UNIMPLEMENTED",
            http_status=501,
        )
    uri = request.custom_model.gcs_uri
    if not uri:
        raise invalid(
            "custom_model.gcs_uri is required: the gs:// folder holding the Hugging Face model "
            "files (config.json, *.safetensors, tokenizer)."
        )
    from modeldrop.adapters.gcs_folder import parse_gs_uri
    from modeldrop.errors import UsageError

    try:
        bucket, prefix = parse_gs_uri(uri)
    except UsageError as exc:
        raise invalid(f"custom_model.gcs_uri is invalid: {exc}") from exc
    return f"gs://{bucket}/{prefix}".rstrip("/")


def _display_name(path: str, value: str, default: str) -> str:
    if len(value) > DISPLAY_NAME_MAX:
        raise invalid(f"{path} has {len(value)} characters; at most {DISPLAY_NAME_MAX} allowed.")
    return value or default[:DISPLAY_NAME_MAX]


def _user_id(path: str, value: str, pattern: re.Pattern[str], rule: str) -> str | None:
    if not value:
        return None
    if not pattern.fullmatch(value):
        raise invalid(f"{path} {value!r} is invalid: use {rule}.")
    return value


def _psc(endpoint_config: Any) -> dict[str, Any] | None:
    if not endpoint_config.HasField("private_service_connect_config"):
        return None
    psc = endpoint_config.private_service_connect_config
    allowlist = list(psc.project_allowlist)
    if psc.enable_private_service_connect and not allowlist:
        raise invalid(
            "endpoint_config.private_service_connect_config.project_allowlist is empty; name "
            "the projects whose clients query the private endpoint."
        )
    config: dict[str, Any] = {"enablePrivateServiceConnect": psc.enable_private_service_connect}
    if allowlist:
        config["projectAllowlist"] = allowlist
    return config


def _check_not_public(endpoint_config: Any, psc: dict[str, Any] | None) -> None:
    """Scale To Zero is refused on a shared public endpoint (no dedicated endpoint, no PSC)."""
    if endpoint_config.dedicated_endpoint_disabled and not (psc or {}).get(
        "enablePrivateServiceConnect"
    ):
        raise invalid(
            "Scale To Zero (min_replica_count 0) cannot be enabled on shared public endpoints; "
            "leave endpoint_config.dedicated_endpoint_disabled unset, or set min_replica_count."
        )


def _resources(deploy_config: Any) -> dict[str, Any]:
    if not deploy_config.HasField("dedicated_resources"):
        return {"machine": MachineSpec(*DEFAULT_MACHINE)}
    resources = deploy_config.dedicated_resources
    where = "deploy_config.dedicated_resources"
    spec = resources.machine_spec
    machine = check_machine_spec(spec.machine_type, spec.accelerator_type, spec.accelerator_count)
    minimum = resources.min_replica_count
    if minimum < 0:
        raise invalid(
            f"{where}.min_replica_count is {minimum}; set at least 1, or 0 to scale to zero."
        )
    max_replicas = resources.max_replica_count or minimum
    if max_replicas < minimum:
        raise invalid(
            f"{where}.max_replica_count ({resources.max_replica_count}) is below "
            f"min_replica_count ({minimum}); set max >= min."
        )
    return {
        "machine": machine,
        "min_replicas": minimum,
        "max_replicas": max_replicas,
        "spot": resources.spot,
        "scale_to_zero": _scale_to_zero(resources, where, max_replicas),
    }


def _scale_to_zero(resources: Any, where: str, max_replicas: int) -> ScaleToZero | None:
    """The Scale To Zero settings of min_replica_count 0; None (and nothing of it set) above."""
    given = resources.initial_replica_count or resources.HasField("scale_to_zero_spec")
    if resources.min_replica_count:
        if given:
            raise invalid(
                f"{where}: initial_replica_count and scale_to_zero_spec apply to Scale To Zero "
                "only; set min_replica_count to 0, or leave them out."
            )
        return None
    if max_replicas < 1:
        raise invalid(
            f"{where}.max_replica_count is 0; with min_replica_count 0 (Scale To Zero) set it "
            "to at least 1."
        )
    initial = resources.initial_replica_count
    if not 0 <= initial <= max_replicas:
        raise invalid(
            f"{where}.initial_replica_count is {initial}; it must be between 1 and "
            f"max_replica_count ({max_replicas})."
        )
    spec = resources.scale_to_zero_spec
    return ScaleToZero(
        initial_replicas=initial or None,
        min_scaleup_s=_period(spec, "min_scaleup_period", where),
        idle_scaledown_s=_period(spec, "idle_scaledown_period", where),
    )


def _period(spec: Any, name: str, where: str) -> float | None:
    """A scale_to_zero_spec Duration in seconds (None when unset), within the API's bounds."""
    if not spec.HasField(name):
        return None
    duration = getattr(spec, name)
    seconds = duration.seconds + duration.nanos / 1e9
    if not STZ_MIN_S <= seconds <= STZ_MAX_S:
        raise invalid(
            f"{where}.scale_to_zero_spec.{name} is {seconds:g}s; it must be between "
            f"{STZ_MIN_S}s (5 minutes) and {STZ_MAX_S}s (8 hours)."
        )
    return seconds


def check_machine_spec(machine_type: str, accelerator: int | str, count: int) -> MachineSpec:
    """A MachineSpec consistent with the machine catalog, or 400 saying what would fit."""
    where = "deploy_config.dedicated_resources.machine_spec"
    names = accelerator_names()
    if isinstance(accelerator, int):
        if accelerator not in names:
            raise invalid(
                f"Invalid value at '{where}.accelerator_type' "
                f"(type.googleapis.com/google.cloud.aiplatform.v1beta1.AcceleratorType), "
                f"{accelerator}."
            )
        accelerator = names[accelerator]
    known = machines()
    if not machine_type:
        raise invalid(
            f"{where}.machine_type is required with dedicated_resources; set machine_type, "
            "accelerator_type and accelerator_count together (e.g. g2-standard-12, NVIDIA_L4, 1)."
        )
    if machine_type not in known:
        raise invalid(
            f"Machine type {machine_type!r} is not supported for deploying custom weights. "
            f"Supported: {', '.join(sorted(known))}."
        )
    want_type, want_count = known[machine_type]
    if accelerator in ("", "ACCELERATOR_TYPE_UNSPECIFIED") or count == 0:
        raise invalid(
            f"{where}: machine type {machine_type} needs accelerator_type {want_type} and "
            f"accelerator_count {want_count}; set all three fields."
        )
    if accelerator != want_type:
        raise invalid(
            f"{where}.accelerator_type {accelerator} is not available on {machine_type}; "
            f"{machine_type} comes with {want_count} x {want_type}."
        )
    if count != want_count:
        raise invalid(
            f"{where}.accelerator_count {count} does not match {machine_type}, which has "
            f"{want_count} x {want_type}."
        )
    return MachineSpec(machine_type, accelerator, count)


# Labels: keys start with a lowercase letter; keys and values up to 63 of [a-z0-9_-].
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64
_UPDATABLE = {"labels": "labels", "display_name": "displayName", "description": "description"}


def check_endpoint_update(body: Any, update_mask: str) -> dict[str, Any]:
    """The changes of an UpdateEndpoint (PATCH ?updateMask=...), keyed by camelCase field."""
    from google.cloud.aiplatform_v1beta1.types import endpoint as endpoint_types
    from google.protobuf import json_format

    if not isinstance(body, dict):
        raise invalid(f"Invalid JSON payload received. Expected an Endpoint, got {_kind(body)}.")
    message = endpoint_types.Endpoint.pb()()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise invalid(f"Invalid JSON payload received. {str(exc).splitlines()[0]}") from exc
    paths = [p.strip() for p in update_mask.split(",") if p.strip()]
    if not paths:
        raise invalid("update_mask is required; e.g. ?updateMask=labels or displayName.")
    changes: dict[str, Any] = {}
    for path in paths:
        snake = re.sub(r"(?<!^)([A-Z])", r"_\1", path).lower()
        if snake not in _UPDATABLE:
            raise invalid(
                f"update_mask path {path!r} is not supported; the emulator updates "
                f"{', '.join(sorted(_UPDATABLE))}."
            )
        changes[_UPDATABLE[snake]] = getattr(message, snake)
    if "labels" in changes:
        changes["labels"] = check_labels(dict(changes["labels"]))
    if "displayName" in changes:
        if not changes["displayName"]:
            raise invalid("endpoint.display_name cannot be empty.")
        _display_name("endpoint.display_name", changes["displayName"], "")
    return changes


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Labels as Google Cloud accepts them, or 400 naming the first bad one."""
    if len(labels) > MAX_LABELS:
        raise invalid(f"{len(labels)} labels given; at most {MAX_LABELS} allowed.")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise invalid(
                f"Label key {key!r} is invalid: start with a lowercase letter, then up to 62 "
                "lowercase letters, digits, '_' or '-'."
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise invalid(
                f"Label value {value!r} (key {key!r}) is invalid: up to 63 lowercase letters, "
                "digits, '_' or '-'."
            )
    return labels
