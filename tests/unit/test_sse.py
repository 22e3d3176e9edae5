"""Streams end with `data: [DONE]` exactly once, whatever the source sent."""

from __future__ import annotations

from modeldrop.sse import DONE, DoneTracker, ending_with_done


def test_done_tracker_appends_done_only_when_missing() -> None:
    tracker = DoneTracker()
    tracker.feed(b'data: {"a": 1}\n\n')
    assert tracker.closing() == DONE
    tracker = DoneTracker()
    tracker.feed(b'data: {"a": 1}\n\ndata: [DO')
    tracker.feed(b"NE]\n\n")
    assert tracker.closing() == b""
    tracker = DoneTracker()
    tracker.feed(b'data: {"a": 1}')
    assert tracker.closing() == b"\n\n" + DONE


def test_chunks_pass_through_unchanged_and_in_order() -> None:
    chunks = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n']
    assert list(ending_with_done(iter(chunks))) == [*chunks, DONE]
    assert list(ending_with_done(iter([*chunks, DONE]))) == [*chunks, DONE]
    assert list(ending_with_done(iter([]))) == [DONE]
