"""Errors that cross a boundary: a stable code, a message for people, a hint on what to do."""

from __future__ import annotations


class ModeldropError(Exception):
    """Base error with a stable `code`, a human `message` and a `hint`."""

    code = "MODELDROP_ERROR"

    def __init__(self, message: str, hint: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class AccessError(ModeldropError):
    """The folder or bucket could not be read (missing, no permission, network)."""

    code = "ACCESS_ERROR"


class UsageError(ModeldropError):
    """The caller asked for something that makes no sense (bad path, bad option)."""

    code = "USAGE_ERROR"


class InputError(ModeldropError, ValueError):
    """Input that cannot be used (a broken file, a malformed document): parsers raise it with
    the stable code of the finding validation turns it into."""

    code = "INPUT_INVALID"
