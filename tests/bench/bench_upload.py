"""Storage read by the validate handler over all the finalize events of one N-shard upload.

A DeepSeek-V3-shaped folder (91,991 tensors; the real checkpoint's names, dtypes and index, one
index entry per tensor) is split into N shards and uploaded object by object to fake-gcs-server,
small files first and the shards last (what a parallel uploader finishes in), each upload
followed by its finalize event to the validate handler (records in the Firestore emulator,
settle 0). Shapes are shrunk to ones, so a shard is its header: fake-gcs-server holds objects in
memory, and the handler reads headers, never tensor data. Counted exactly: object bytes
downloaded (the GcsFolder counters of every folder the handler opened) and storage requests (a
counting wrapper on the handler's storage client). Target: all N events read at most twice what
one validation of the complete folder reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from modeldrop import catalog
from tests.fixtures.header_only import config_for, shard, tensor_bytes, tensor_layout
from tests.fixtures.model_folders import write_json, write_valid
from tests.fixtures.safetensors_files import header_dict, write_header

SHARDS = (10, 50, 163)
BUCKET = "bench-upload"
BASE = "DeepSeek-V3"
INDEX = "model.safetensors.index.json"


def build_folder(root: Path, shards: int) -> list[str]:
    """Write the folder; returns its file names in upload order (small files, then shards)."""
    base = next(b for b in catalog.base_models() if b["model"] == BASE)
    tensors = tensor_layout(base)
    low, high = 1, sum(tensor_bytes(dtype, shape) for _, dtype, shape in tensors)
    while low < high:  # the smallest shard size that needs at most `shards` shards
        middle = (low + high) // 2
        low, high = (low, middle) if len(shard(tensors, middle)) <= shards else (middle + 1, high)
    groups = shard(tensors, low)
    assert len(groups) == shards, (shards, len(groups))
    root.mkdir(parents=True)
    write_json(root / "config.json", config_for(base))
    write_json(root / "tokenizer.json", {"version": "1.0", "model": {"type": "BPE"}})
    write_json(root / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast"})
    weight_map, names = {}, []
    for number, group in enumerate(groups, start=1):
        name = f"model-{number:05d}-of-{shards:05d}.safetensors"
        write_header(root / name, header_dict((n, dtype, [1] * len(s)) for n, dtype, s in group))
        weight_map.update({tensor_name: name for tensor_name, _, _ in group})
        names.append(name)
    write_json(root / INDEX, {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))})
    return [*sorted(p.name for p in root.iterdir() if p.name not in names), *names]


def counting_client():
    """A storage client whose HTTP requests are counted by kind: list, download, other."""
    from modeldrop.adapters.gcs_folder import default_client

    client = default_client()
    counts: Counter[str] = Counter()
    send = client._http.request

    def request(method, url, *args, **kwargs):
        path = url.split("?")[0]
        kind = "download" if "/download/" in path else "list" if path.endswith("/o") else "other"
        counts[kind if method == "GET" else "other"] += 1
        return send(method, url, *args, **kwargs)

    client._http.request = request
    return client, counts


def deliver(store, root: Path, order: list[str], prefix: str) -> dict:
    """Upload the folder object by object, each followed by its finalize event; the counts."""
    from modeldrop.adapters.gcs_folder import GcsFolder, default_client
    from modeldrop.service.context import Context
    from modeldrop.service.validate import on_object_finalized
    from modeldrop.settings import Settings
    from tests.unit.service.fakes import (
        FakeDeployer,
        FakeEndpoints,
        FakeEvents,
        FakePrivateNetwork,
        FakeQueue,
        FakeServingLogs,
    )

    uploader = default_client().bucket(BUCKET)
    client, counts = counting_client()
    opened: list[GcsFolder] = []

    def open_folder(uri: str) -> GcsFolder:
        opened.append(GcsFolder(uri, client))
        return opened[-1]

    settings = Settings.from_env({"MODELDROP_BUCKET": BUCKET, "MODELDROP_SETTLE_SECONDS": "0"})
    queue = FakeQueue()
    ctx = Context(
        settings,
        store,
        FakeEvents(),
        queue,
        FakeDeployer(),
        open_folder,
        endpoints=FakeEndpoints(),
        serving_logs=FakeServingLogs(),
        private_network=FakePrivateNetwork(),
    )
    results, handler_s = [], 0.0
    for name in order:
        uploader.blob(f"{prefix}/{name}").upload_from_filename(root / name)
        started = time.perf_counter()
        results.append(on_object_finalized(ctx, BUCKET, f"{prefix}/{name}"))
        handler_s += time.perf_counter() - started
    final = [r for r in results if r is not None]
    assert [r.state.value for r in final] == ["VALIDATED"], [r.state for r in final]
    assert len(queue.messages) == 1
    assert counts["download"] == sum(f.reads for f in opened), (counts, opened)
    return {
        "bytes": sum(f.bytes_read for f in opened),
        "requests": sum(counts.values()),
        "listings": counts["list"],
        "downloads": counts["download"],
        "handler_s": handler_s,
    }


def single_validation(prefix: str) -> tuple[int, int]:
    """Bytes and requests of one validation of the complete folder."""
    from modeldrop.adapters.gcs_folder import GcsFolder
    from modeldrop.validation.validator import validate_folder

    client, counts = counting_client()
    folder = GcsFolder(f"gs://{BUCKET}/{prefix}", client)
    assert validate_folder(folder).accepted
    return folder.bytes_read, sum(counts.values())


def run() -> dict:
    from modeldrop.local.emulators import (
        DEFAULT_PROJECT,
        missing_emulators,
        start_fake_gcs,
        start_firestore,
    )

    if reason := missing_emulators(["gcs", "firestore"]):
        print(f"   SKIPPED: {reason}")
        return {"skipped": reason, "targets": {}}
    from google.cloud import firestore

    from modeldrop.adapters.firestore_store import FirestoreDeploymentStore
    from modeldrop.adapters.gcs_folder import default_client

    work = Path(tempfile.mkdtemp(prefix="modeldrop-bench-upload-"))
    emulators = [start_fake_gcs(), start_firestore()]
    results: dict[str, list] = {
        key: []
        for key in (
            "shards",
            "events",
            "bytes_read",
            "requests",
            "listings",
            "downloads",
            "single_validation_bytes",
            "single_validation_requests",
            "index_bytes",
            "handler_s",
        )
    }
    try:
        for emulator in emulators:
            os.environ.update(emulator.env)
        default_client().create_bucket(BUCKET)
        db = firestore.Client(project=DEFAULT_PROJECT)
        warm = write_valid(work / "warm-up")  # imports, catalogs, the emulators' first requests
        names = sorted(p.name for p in warm.iterdir())
        deliver(FirestoreDeploymentStore(db, "bench-upload-warm-up"), warm, names, "models/warm")
        for shards in SHARDS:
            root = work / f"deepseek-{shards}"
            order = build_folder(root, shards)
            prefix = f"models/deepseek-{shards}"
            store = FirestoreDeploymentStore(db, f"bench-upload-{uuid.uuid4().hex[:8]}")
            counted = deliver(store, root, order, prefix)
            single_bytes, single_requests = single_validation(prefix)
            row = {
                "shards": shards,
                "events": len(order),
                "bytes_read": counted["bytes"],
                "requests": counted["requests"],
                "listings": counted["listings"],
                "downloads": counted["downloads"],
                "single_validation_bytes": single_bytes,
                "single_validation_requests": single_requests,
                "index_bytes": (root / INDEX).stat().st_size,
                "handler_s": round(counted["handler_s"], 2),
            }
            for key, value in row.items():
                results[key].append(value)
            print(
                f"   N={shards:4d}: {row['events']} events, {row['bytes_read']:>12,} bytes in "
                f"{row['requests']} requests ({row['listings']} listings, {row['downloads']} "
                f"downloads), {row['handler_s']:.1f} s; one validation {single_bytes:,} bytes "
                f"in {single_requests} requests; index {row['index_bytes']:,} bytes"
            )
            shutil.rmtree(root)
    finally:
        for emulator in reversed(emulators):
            emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    within = all(
        read <= 2 * single
        for read, single in zip(
            results["bytes_read"], results["single_validation_bytes"], strict=True
        )
    )
    return {**results, "targets": {"bytes_read <= 2 x single_validation_bytes at every N": within}}
