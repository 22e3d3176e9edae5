"""What the events of one upload read: one listing each, each index document once per
generation per instance (IndexCache), and the settle rule still listing again after its wait."""

from __future__ import annotations

import json
import os

from modeldrop.domain.deployment import State
from modeldrop.domain.folder import FileInfo
from modeldrop.service.index_cache import IndexCache
from modeldrop.service.validate import on_object_finalized
from tests.fixtures.model_folders import INDEX, SHARD1, SHARD2
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import BUCKET, LocalBucket, make_harness


def small_files_first(model) -> list[str]:
    """Upload order of a parallel uploader: the small files (index included) land first."""
    return [*sorted(p.name for p in model.iterdir() if p.suffix != ".safetensors"), SHARD1, SHARD2]


def reupload(h, model, name: str) -> str:
    """Upload the file again as a new generation (the fake bucket's generation is the mtime,
    moved on a second here so that it differs however fast the upload)."""
    (obj,) = h.bucket.upload(BUCKET, "models/qwen-ft", model, [name])
    path = h.bucket.root / BUCKET / obj
    mtime = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(mtime, mtime))
    return obj


def test_every_event_lists_once_and_the_index_is_read_once(h, model):
    order = small_files_first(model)
    results = upload_all(h, model, order=order)
    assert results[-1].state is State.VALIDATED
    assert h.bucket.listings == len(order)  # settle 0: validation uses the event's listing
    assert h.bucket.reads[INDEX] == 2  # once for every event's decision, once by validation
    for _ in range(5):  # duplicates of the last event: listed, nothing read again
        duplicate = on_object_finalized(h.ctx, BUCKET, f"models/qwen-ft/{SHARD2}")
        assert (duplicate.id, duplicate.state) == (results[-1].id, State.VALIDATED)
    assert h.bucket.listings == len(order) + 5 and h.bucket.reads[INDEX] == 2
    assert len(h.store.rows) == 1


def test_a_new_generation_of_the_index_is_read_again(h, model):
    first = upload_all(h, model, order=small_files_first(model))[-1]
    second = on_object_finalized(h.ctx, BUCKET, reupload(h, model, INDEX))
    assert second.id != first.id and second.state is State.VALIDATED
    assert h.bucket.reads[INDEX] == 4  # each generation: once to decide, once to validate


def test_the_settle_window_lists_again_and_supersedes_a_folder_that_changed(tmp_path, model):
    h = make_harness(tmp_path, MODELDROP_SETTLE_SECONDS="10")
    *first, last = small_files_first(model)
    upload_all(h, model, order=first)
    listings = h.bucket.listings

    replaced = []

    def sleep_while_the_index_is_replaced(seconds: float) -> None:
        h.clock.advance(seconds)
        replaced.append(reupload(h, model, INDEX))

    h.ctx.sleep = sleep_while_the_index_is_replaced
    record = upload_all(h, model, order=[last])[-1]
    assert record.state is State.SUPERSEDED
    assert h.bucket.listings == listings + 2  # the event's listing, then one after the wait
    h.ctx.sleep = h.clock.advance
    newer = on_object_finalized(h.ctx, BUCKET, replaced[0])
    assert newer.state is State.VALIDATED and newer.id != record.id
    assert h.bucket.reads[INDEX] == 3  # each generation once to decide, the newer one validated


def write_index(tmp_path, shards: list[str]) -> FileInfo:
    weight_map = {f"tensor.{n}": shard for n, shard in enumerate(shards)}
    (tmp_path / INDEX).write_text(json.dumps({"weight_map": weight_map}))
    return FileInfo(INDEX, (tmp_path / INDEX).stat().st_size, "1")


def test_cache_reads_each_generation_once(tmp_path):
    bucket = LocalBucket(tmp_path)
    folder = bucket.open("gs://b")
    (tmp_path / "b").mkdir()
    index = write_index(tmp_path / "b", [SHARD1, SHARD2])
    cache = IndexCache()
    assert cache.shards(folder, index) == {SHARD1, SHARD2}
    assert cache.shards(bucket.open("gs://b"), index) == {SHARD1, SHARD2}
    assert bucket.reads[INDEX] == 1
    cache.shards(folder, FileInfo(INDEX, index.size, "2"))
    cache.shards(folder, FileInfo(INDEX, index.size, ""))  # no generation: never kept
    cache.shards(folder, FileInfo(INDEX, index.size, ""))
    assert bucket.reads[INDEX] == 4


def test_cache_drops_the_least_recently_used_past_its_bounds(tmp_path):
    bucket = LocalBucket(tmp_path)
    folder = bucket.open("gs://b")
    (tmp_path / "b").mkdir()
    index = write_index(tmp_path / "b", [SHARD1, SHARD2])
    generations = [FileInfo(INDEX, index.size, str(g)) for g in range(4)]

    by_count = IndexCache(entries=2)
    for file in [generations[0], generations[1], generations[0], generations[2]]:
        by_count.shards(folder, file)  # 0 was used after 1: 1 goes when 2 comes
    assert bucket.reads[INDEX] == 3
    by_count.shards(folder, generations[0])
    assert bucket.reads[INDEX] == 3
    by_count.shards(folder, generations[1])
    assert bucket.reads[INDEX] == 4

    names = len(SHARD1) + len(SHARD2)
    by_size = IndexCache(size=names)  # room for one shard set
    for file in [generations[0], generations[1], generations[1], generations[0]]:
        by_size.shards(folder, file)
    assert bucket.reads[INDEX] == 4 + 3
    too_small = IndexCache(size=names - 1)  # a shard set over the bound is never kept
    too_small.shards(folder, generations[0])
    too_small.shards(folder, generations[0])
    assert bucket.reads[INDEX] == 4 + 3 + 2
