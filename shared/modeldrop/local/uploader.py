"""Upload a model folder to a bucket as a user would, with a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, out: IO[str] = sys.stderr) -> None:
        self.total, self.done, self.out = max(total, 1), 0, out

    def advance(self, count: int) -> None:
        self.done += count
        if not self.out.isatty():
            return  # a log file gets the final line only
        width = 30
        filled = int(width * self.done / self.total)
        self.out.write(
            f"\r  [{'#' * filled}{'.' * (width - filled)}] {self.done / 2**20:7.2f} / "
            f"{self.total / 2**20:.2f} MiB"
        )
        self.out.flush()

    def finish(self) -> None:
        if self.out.isatty():
            self.out.write("\n")
        else:
            self.out.write(f"  uploaded {self.done / 2**20:.2f} MiB\n")


class _CountingReader:
    def __init__(self, handle: IO[bytes], on_read: Callable[[int], None]) -> None:
        self.handle, self.on_read = handle, on_read

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.on_read(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def upload_folder(
    client: Any, folder: Path, bucket: str, prefix: str, order: list[str] | None = None
) -> list[str]:
    """Upload every file of `folder` to gs://bucket/prefix/ (in `order` if given)."""
    names = order or sorted(p.name for p in folder.iterdir() if p.is_file())
    progress = _Progress(sum((folder / n).stat().st_size for n in names))
    target = client.bucket(bucket)
    uploaded = []
    for name in names:
        path = folder / name
        with open(path, "rb") as handle:
            blob = target.blob(f"{prefix.rstrip('/')}/{name}")
            blob.upload_from_file(
                _CountingReader(handle, progress.advance), size=path.stat().st_size
            )
        uploaded.append(blob.name)
    progress.finish()
    return uploaded
