"""Server-sent events: make a stream end with `data: [DONE]` as OpenAI-compatible clients expect."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

DONE = b"data: [DONE]\n\n"


class DoneTracker:
    """Watches an SSE stream's bytes; says whether it still needs a final `data: [DONE]`."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        self._tail = (self._tail + chunk)[-64:]
        return chunk

    def closing(self) -> bytes:
        """The bytes to append at the end of the stream (DONE unless it was sent)."""
        if b"[DONE]" in self._tail:
            return b""
        return DONE if self._tail.endswith(b"\n\n") or not self._tail else b"\n\n" + DONE


def ending_with_done(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks unchanged, as they arrive, then `data: [DONE]` if the source did not send it."""
    tracker = DoneTracker()
    for chunk in chunks:
        yield tracker.feed(chunk)
    if tail := tracker.closing():
        yield tail
