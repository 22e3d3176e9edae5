"""Findings and verdicts: what validation says about a model folder."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

EXCERPT_CHARS = 200
"""The most characters of any input value quoted in a message."""


class _Excerpt(reprlib.Repr):
    """reprlib, which never formats more of a container than it shows, with big ints summarised."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:
            return f"<an integer of {x.bit_length() * 3 // 10}+ digits>"
        return repr(x)


_EXCERPT = _Excerpt()
_EXCERPT.maxlevel = 3
_EXCERPT.maxtuple = _EXCERPT.maxlist = _EXCERPT.maxdict = _EXCERPT.maxset = 8
_EXCERPT.maxstring = _EXCERPT.maxother = _EXCERPT.maxlong = EXCERPT_CHARS


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A repr of any input value, cut to about `limit` characters (never formatted whole)."""
    text = _EXCERPT.repr(value)
    if isinstance(value, str | bytes) and len(value) > limit:
        text = repr(value[:limit]) + f"... ({len(value)} in all)"
    return text if len(text) <= limit + 40 else text[:limit] + "..."


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


MAX_MESSAGE_CHARS = 2000
"""A safety net under `excerpt`: no finding's message or hint is longer than this."""


def _finding(severity: Severity, code: str, message: str, file: str | None, hint: str) -> Finding:
    def cut(text: str) -> str:
        return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."

    return Finding(code, severity, cut(message), None if file is None else cut(file), cut(hint))


def error(code: str, message: str, file: str | None = None, hint: str = "") -> Finding:
    return _finding(Severity.ERROR, code, message, file, hint)


def warning(code: str, message: str, file: str | None = None, hint: str = "") -> Finding:
    return _finding(Severity.WARNING, code, message, file, hint)


def info(code: str, message: str, file: str | None = None, hint: str = "") -> Finding:
    return _finding(Severity.INFO, code, message, file, hint)


def internal_error(exc: BaseException, file: str | None = None) -> Finding:
    """INTERNAL_ERROR: input that made modeldrop fail unexpectedly, named by its exception class."""
    return error(
        "INTERNAL_ERROR",
        f"modeldrop could not read this input: validation failed with {type(exc).__name__} "
        "instead of a finding. The upload is rejected rather than left half-checked.",
        file,
        "Check that every file is what save_pretrained() writes and upload the folder again; "
        "if it is, report this to the modeldrop team with the deployment id.",
    )


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
    attention_heads: int | None = None  # num_attention_heads: the machines it can be split over
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
            "attention_heads": self.attention_heads,
            "recommended_machine": (
                self.recommended_machine.as_dict() if self.recommended_machine else None
            ),
            "findings": [f.as_dict() for f in self.findings],
        }
