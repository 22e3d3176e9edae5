"""Findings and verdicts: what validation says about a model folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One observation about a folder: a stable code, a severity, what was found and what to do."""

    code: str
    severity: Severity
    message: str
    file: str | None = None
    hint: str = ""

    def as_dict(self) -> dict[str, Any]:
        text = f"{self.message} {self.hint}".strip() if self.hint else self.message
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": text,
            "file": self.file,
        }


def error(code: str, message: str, file: str | None = None, hint: str = "") -> Finding:
    return Finding(code, Severity.ERROR, message, file, hint)


def warning(code: str, message: str, file: str | None = None, hint: str = "") -> Finding:
    return Finding(code, Severity.WARNING, message, file, hint)


def info(code: str, message: str, file: str | None = None, hint: str = "") -> Finding:
    return Finding(code, Severity.INFO, message, file, hint)


@dataclass(frozen=True)
class MachineSpec:
    """A Vertex AI machine: type, accelerator enum name and count."""

    machine_type: str
    accelerator_type: str
    accelerator_count: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine_type": self.machine_type,
            "accelerator_type": self.accelerator_type,
            "accelerator_count": self.accelerator_count,
        }


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one folder (the JSON of `modeldrop validate --json`)."""

    findings: tuple[Finding, ...]
    architecture: str | None = None
    model_type: str | None = None
    matched_base: str | None = None
    parameters: int | None = None
    weight_bytes: int | None = None
    recommended_machine: MachineSpec | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": "accepted" if self.accepted else "rejected",
            "architecture": self.architecture,
            "model_type": self.model_type,
            "matched_base": self.matched_base,
            "parameters": self.parameters,
            "weight_bytes": self.weight_bytes,
            "recommended_machine": (
                self.recommended_machine.as_dict() if self.recommended_machine else None
            ),
            "findings": [f.as_dict() for f in self.findings],
        }
