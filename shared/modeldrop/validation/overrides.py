"""Per-folder deployment overrides from modeldrop.yaml, schema-validated; errors are findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from modeldrop.catalog import overrides_schema
from modeldrop.domain.findings import Finding, MachineSpec, error

FIX_HINT = "Fix modeldrop.yaml (see the README's 'Per-folder overrides') and upload it again."


@dataclass(frozen=True)
class Overrides:
    values: dict[str, Any]
    findings: list[Finding]

    @property
    def machine_spec(self) -> MachineSpec | None:
        spec = self.values.get("machine_spec")
        return MachineSpec(**spec) if spec else None


def parse_overrides(data: bytes, file: str) -> Overrides:
    """Parse and validate modeldrop.yaml; an invalid file yields findings and no values."""
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return Overrides(
            {}, [error("OVERRIDES_INVALID", f"{file} is not valid YAML: {reason}.", file, FIX_HINT)]
        )
    if document is None:
        return Overrides({}, [])
    problems = sorted(
        Draft202012Validator(overrides_schema()).iter_errors(document),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    findings = [
        error(
            "OVERRIDES_INVALID",
            f"{file}: {'.'.join(map(str, p.absolute_path)) or '(top level)'}: {p.message}.",
            file,
            FIX_HINT,
        )
        for p in problems
    ]
    if not findings:
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
    return Overrides({} if findings else document, findings)
