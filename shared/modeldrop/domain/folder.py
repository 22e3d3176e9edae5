"""The folder port: list a model folder, read byte ranges of its files (validation and the
validate handler read through it; local and gs:// adapters implement it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FileInfo:
    """One file of a model folder; `name` is relative to the folder root (posix separators)."""

    name: str
    size: int
    generation: str = ""


class Folder(Protocol):
    """Read-only access to one model folder (local directory or gs:// prefix).

    Implementations raise `modeldrop.errors.AccessError` when the folder cannot be read.
    """

    @property
    def location(self) -> str:
        """Where the folder lives, for messages (a path or gs:// URI)."""
        ...

    def list_files(self) -> list[FileInfo]:
        """Every file under the folder, recursively, sorted by name; at most one more than the
        catalog's `listed_files` limit (a longer listing is cut there, and rejected)."""
        ...

    def read_range(self, name: str, start: int, length: int) -> bytes:
        """Up to `length` bytes of file `name` from offset `start` (fewer at end of file)."""
        ...

    def read_tail(self, name: str, length: int) -> bytes:
        """The last `length` bytes of file `name` (the whole file when it is shorter)."""
        ...
