"""A model folder on local disk, read through the validation storage port."""

from __future__ import annotations

import os
from pathlib import Path

from modeldrop import catalog
from modeldrop.domain.folder import FileInfo
from modeldrop.errors import AccessError


class LocalFolder:
    """Ranged reads over files of a local directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.bytes_read = 0
        self.reads = 0

    @property
    def location(self) -> str:
        return str(self.root)

    def list_files(self) -> list[FileInfo]:
        if not self.root.is_dir():
            raise AccessError(
                f"{self.root} is not a directory.",
                "Pass the path of a Hugging Face model folder (the one holding config.json).",
            )
        limit = catalog.file_rules()["limits"]["listed_files"] + 1
        files = []
        for path in self.root.rglob("*"):
            if path.is_file():
                stat = path.stat()
                name = path.relative_to(self.root).as_posix()
                files.append(FileInfo(name, stat.st_size, str(stat.st_mtime_ns)))
                if len(files) == limit:
                    break
        return sorted(files, key=lambda f: f.name)

    def read_range(self, name: str, start: int, length: int) -> bytes:
        try:
            with open(self.root / name, "rb") as handle:
                handle.seek(start)
                data = handle.read(length)
        except OSError as exc:
            raise AccessError(f"Cannot read {name} in {self.root}: {exc.strerror}.") from exc
        self.reads += 1
        self.bytes_read += len(data)
        return data

    def read_tail(self, name: str, length: int) -> bytes:
        try:
            size = (self.root / name).stat().st_size
        except OSError as exc:
            raise AccessError(f"Cannot read {name} in {self.root}: {exc.strerror}.") from exc
        start = max(0, size - length)
        return self.read_range(name, start, size - start)
