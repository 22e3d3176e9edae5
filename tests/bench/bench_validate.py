"""Header-only validation of a ~1 GB, 20-shard folder in fake-gcs-server versus downloading it.

Both paths run in one process against the same emulator: `modeldrop validate gs://...` (ranged
header reads) and "download every file, then validate the local copy". Targets: ratio >= 50,
validation reading < 0.1% of the folder's bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modeldrop.adapters.gcs_folder import GcsFolder, default_client
from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.local.emulators import missing_emulators, start_fake_gcs
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.validator import validate_folder
from tests.fixtures.model_folders import base_config, write_json
from tests.fixtures.safetensors_files import write_sparse

SHARDS = 20
SHARD_BYTES = 50 * 2**20  # 20 x 50 MiB = 1000 MiB
BUCKET, PREFIX = "bench-models", "models/bench-1g"
WORKERS = 16


def build_folder(root: Path) -> Path:
    """20 shards of 50 MiB, each holding 8 layer-shaped BF16 tensors, with an index."""
    root.mkdir(parents=True)
    write_json(root / "config.json", base_config())
    write_json(root / "tokenizer.json", {"version": "1.0"})
    write_json(root / "tokenizer_config.json", {"tokenizer_class": "Qwen2Tokenizer"})
    weight_map = {}
    per_tensor = SHARD_BYTES // 8 // 2  # BF16 elements
    for s in range(SHARDS):
        name = f"model-{s + 1:05d}-of-{SHARDS:05d}.safetensors"
        tensors = [
            (f"model.layers.{s}.part{t}.weight", "BF16", [per_tensor // 1024, 1024])
            for t in range(8)
        ]
        write_sparse(root / name, tensors)
        weight_map.update({t[0]: name for t in tensors})
    write_json(root / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    return root


def upload(client, root: Path) -> None:
    bucket = client.create_bucket(BUCKET)
    files = sorted(root.iterdir())
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda p: bucket.blob(f"{PREFIX}/{p.name}").upload_from_filename(p), files))


def download(client, target: Path) -> int:
    target.mkdir(parents=True)
    blobs = list(client.list_blobs(BUCKET, prefix=PREFIX + "/"))

    def fetch(blob) -> int:
        blob.download_to_filename(target / blob.name.rsplit("/", 1)[1], checksum=None)
        return blob.size

    with ThreadPoolExecutor(WORKERS) as pool:
        return sum(pool.map(fetch, blobs))


def run() -> dict:
    reason = missing_emulators(["gcs"])
    if reason:
        print(f"   SKIPPED: {reason}")
        return {"skipped": reason, "targets": {}}
    work = Path(tempfile.mkdtemp(prefix="modeldrop-bench-"))
    gcs = start_fake_gcs()
    try:
        os.environ.update(gcs.env)
        client = default_client()
        source = build_folder(work / "source")
        folder_bytes = sum(p.stat().st_size for p in source.iterdir())
        t0 = time.perf_counter()
        upload(client, source)
        upload_s = time.perf_counter() - t0

        remote = GcsFolder(f"gs://{BUCKET}/{PREFIX}", client)
        t0 = time.perf_counter()
        verdict = validate_folder(remote, BasePolicy.STRICT)
        header_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        downloaded = download(client, work / "copy")
        local = LocalFolder(work / "copy")
        local_verdict = validate_folder(local, BasePolicy.STRICT)
        download_s = time.perf_counter() - t0
        files = len(local.list_files())
    finally:
        gcs.stop()
        shutil.rmtree(work, ignore_errors=True)

    assert verdict.accepted and verdict.as_dict() == local_verdict.as_dict()
    ratio = download_s / header_s
    share = remote.bytes_read / folder_bytes
    print(
        f"   folder: {SHARDS} shards, {folder_bytes / 2**20:.0f} MiB (uploaded in {upload_s:.1f} s)"
    )
    print(
        f"   validate gs://     {header_s * 1000:8.1f} ms  {remote.reads:4d} reads  "
        f"{remote.bytes_read:>12,} bytes ({share:.4%} of the folder)"
    )
    print(
        f"   download+validate  {download_s * 1000:8.1f} ms  {files:4d} files "
        f"{downloaded:>12,} bytes"
    )
    print(f"   ratio              {ratio:8.1f}x")
    return {
        "folder_bytes": folder_bytes,
        "shards": SHARDS,
        "header_validation_s": header_s,
        "header_reads": remote.reads,
        "header_bytes_read": remote.bytes_read,
        "download_and_validate_s": download_s,
        "download_bytes": downloaded,
        "ratio": ratio,
        "targets": {
            "ratio >= 50": ratio >= 50,
            "validation reads < 0.1% of the folder": share < 0.001,
        },
    }
