"""The shard names each weight index lists, read once per object generation per instance.

An N-shard upload delivers N finalize events, and every one decides completion from the index;
an object generation never changes, so its parsed shard set can be kept for the instance's life.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from modeldrop.domain.folder import FileInfo, Folder
from modeldrop.validation.index_file import IndexFileError, parse_index

CACHED_INDEXES = 128  # shard sets kept per instance ...
CACHED_SHARD_BYTES = 8 * 2**20  # ... holding at most this many bytes of shard names


class IndexCache:
    """The shard names each index document holds, keyed by (folder location, file name,
    generation): an object generation never changes, so an entry never goes stale. The least
    recently used entries go first past `entries` entries or `size` bytes of names; a file
    without a generation is read every time. Safe to use from several threads (two that miss
    at once both read)."""

    def __init__(self, entries: int = CACHED_INDEXES, size: int = CACHED_SHARD_BYTES) -> None:
        self.entries, self.size = entries, size
        self._kept: OrderedDict[tuple[str, str, str], tuple[frozenset[str], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def shards(self, folder: Folder, file: FileInfo) -> frozenset[str]:
        key = (folder.location, file.name, file.generation)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key][0]
        shards = _shards(folder.read_range(file.name, 0, file.size))
        cost = sum(len(name.encode()) for name in shards)
        if file.generation and cost <= self.size:
            with self._lock:
                if key not in self._kept:
                    self._kept[key] = (shards, cost)
                    self._bytes += cost
                while len(self._kept) > self.entries or self._bytes > self.size:
                    self._bytes -= self._kept.popitem(last=False)[1][1]
        return shards


def _shards(index: bytes) -> frozenset[str]:
    try:
        return frozenset(parse_index(index).values())
    except IndexFileError:
        return frozenset()
