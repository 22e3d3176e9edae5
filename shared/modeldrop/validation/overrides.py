"""Per-folder deployment overrides from modeldrop.yaml, schema-validated; errors are findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from modeldrop.catalog import overrides_schema
from modeldrop.domain.findings import EXCERPT_CHARS, Finding, MachineSpec, error, excerpt
from modeldrop.domain.smoke import expect_problem

FIX_HINT = "Fix modeldrop.yaml (see the README's 'Per-folder overrides') and upload it again."
MAX_NODES = 2_000  # YAML events (scalars, starts and ends of collections) in one file
MAX_DEPTH = 16
SCHEMA_FINDINGS = 20
# JSON Schema counts 300.0 as an integer; modeldrop.yaml's integers are written as integers.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


@dataclass(frozen=True)
class Overrides:
    values: dict[str, Any]
    findings: list[Finding]

    @property
    def machine_spec(self) -> MachineSpec | None:
        spec = self.values.get("machine_spec")
        return MachineSpec(**spec) if spec else None


class _Refused(Exception):
    """modeldrop.yaml uses YAML that modeldrop does not accept; the message says what."""


def _check_events(text: str) -> None:
    """Refuse anchors, aliases and tags, and bound nodes and nesting, before anything is built
    (an alias bomb of a few hundred bytes expands to gigabytes once composed)."""
    depth = 0
    for nodes, event in enumerate(yaml.parse(text, Loader=yaml.SafeLoader), start=1):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused("uses YAML anchors or aliases (& and *); write every value out")
        tag = getattr(event, "tag", None)
        if tag is not None:  # only explicit tags (!!x, !x) set one
            raise _Refused(f"uses the YAML tag {excerpt(tag)}; plain values only")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _Refused(
                f"is larger than modeldrop reads (more than {MAX_NODES} values or more than "
                f"{MAX_DEPTH} levels of nesting)"
            )


def _plain(value: Any, path: str = "") -> str:
    """Where `value` holds something JSON cannot ("" when nothing): a non-string key, a date."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path or '(top level)'}: key {excerpt(key)} is not a string"
            problem = _plain(item, f"{path}.{key}" if path else key)
            if problem:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = _plain(item, f"{path}[{i}]")
            if problem:
                return problem
    elif not (value is None or isinstance(value, str | int | float | bool)):
        return f"{path or '(top level)'}: {type(value).__name__} values are not accepted"
    return ""


def _invalid(file: str, what: str) -> Overrides:
    return Overrides({}, [error("OVERRIDES_INVALID", f"{file} {what}.", file, FIX_HINT)])


def parse_overrides(data: bytes, file: str) -> Overrides:
    """Parse and validate modeldrop.yaml; an invalid file yields findings and no values."""
    try:
        text = data.decode("utf-8")
        _check_events(text)
        document = yaml.safe_load(text)
    except _Refused as exc:
        return _invalid(file, str(exc))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return _invalid(file, f"is not valid YAML: {reason}")
    if document is None:
        return Overrides({}, [])
    problem = _plain(document)
    if problem:
        return _invalid(file, f"is not plain data: {problem}")
    problems = sorted(
        _Validator(overrides_schema()).iter_errors(document),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    findings = [
        error(
            "OVERRIDES_INVALID",
            f"{file}: {_where(p)}: {_schema_message(p)}.",
            file,
            FIX_HINT,
        )
        for p in problems[:SCHEMA_FINDINGS]
    ]
    if not findings:
        findings = _conflicts(document, file)
    return Overrides({} if findings else document, findings)


def _conflicts(document: dict[str, Any], file: str) -> list[Finding]:
    """What the schema cannot say: values that contradict each other or an expect regex."""
    findings = []
    replicas = document.get("replicas", {})
    if replicas.get("min", 1) > replicas.get("max", replicas.get("min", 1)):
        findings.append(
            error(
                "OVERRIDES_INVALID",
                f"{file}: replicas.min ({replicas['min']}) is above replicas.max "
                f"({replicas['max']}).",
                file,
                FIX_HINT,
            )
        )
    if "scale_to_zero" in document and "min" in replicas:
        # Vertex AI turns Scale To Zero on with min_replica_count 0 (google-cloud-aiplatform 2.7:
        # aiplatform_v1beta1/types/machine_resources.py, DedicatedResources; and
        # aiplatform/preview/models.py refuses its settings with any other minimum).
        findings.append(
            error(
                "OVERRIDES_INVALID",
                f"{file}: replicas.min ({replicas['min']}) contradicts scale_to_zero, which "
                "deploys with no minimum of replicas (Vertex AI's min_replica_count 0).",
                file,
                "Remove replicas.min to scale to zero when idle (replicas.max still caps the "
                "replicas), or remove scale_to_zero to keep replicas.min running; then upload "
                "modeldrop.yaml again.",
            )
        )
    expect = document.get("smoke_test", {}).get("expect")
    if expect is not None and (problem := expect_problem(expect)):
        findings.append(
            error("OVERRIDES_INVALID", f"{file}: smoke_test.expect {problem}.", file, FIX_HINT)
        )
    return findings


def _where(problem: Any) -> str:
    path = ".".join(map(str, problem.absolute_path)) or "(top level)"
    return path if len(path) <= EXCERPT_CHARS else path[:EXCERPT_CHARS] + "..."


def _schema_message(problem: Any) -> str:
    """jsonschema's message, unless it would reprint a long value: then a short form."""
    if len(problem.message) <= EXCERPT_CHARS:
        return str(problem.message)
    return (
        f"{excerpt(problem.instance)} fails {problem.validator!r} "
        f"({excerpt(problem.validator_value)})"
    )
