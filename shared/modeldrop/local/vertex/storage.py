"""Read the model folder from Cloud Storage (or fake-gcs-server) into a local cache.

Uses modeldrop's GCS adapter, so STORAGE_EMULATOR_HOST is honoured. Copies are keyed by the
folder's listing (names, sizes, generations): deploying the same upload again reuses the copy.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modeldrop.adapters.gcs_folder import GcsFolder
from modeldrop.domain.folder import FileInfo
from modeldrop.errors import AccessError
from modeldrop.local.vertex.errors import RpcError, invalid, not_found

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "modeldrop-vertex"
COMPLETE = ".modeldrop-complete"
WORKERS = 8
_FINISH = threading.Lock()  # one copy at a time becomes the cached folder


def list_model_folder(gcs_uri: str) -> tuple[GcsFolder, list[FileInfo]]:
    """The folder and its files; RpcError 404 (no bucket), 403, or 400 (nothing there)."""
    try:
        folder = GcsFolder(gcs_uri)
        files = folder.list_files()
    except AccessError as exc:
        raise _api_error(gcs_uri, exc) from exc
    if not files:
        raise invalid(
            f"custom_model.gcs_uri {gcs_uri} holds no files. Upload the model folder "
            "(config.json, *.safetensors, tokenizer files) there, or fix the path."
        )
    return folder, files


def fetch(folder: GcsFolder, files: list[FileInfo], cache_dir: Path) -> Path:
    """A local copy of the folder under cache_dir/models/<key>; reused when already complete."""
    key = hashlib.sha256(
        "\n".join([folder.uri, *(f"{f.name}\t{f.size}\t{f.generation}" for f in files)]).encode()
    ).hexdigest()[:24]
    target = cache_dir / "models" / key
    if (target / COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=target.parent))
    try:
        bucket = folder.client.bucket(folder.bucket_name)
        prefix = f"{folder.prefix}/" if folder.prefix else ""

        def download(info: FileInfo) -> None:
            destination = (partial / info.name).resolve()
            if not destination.is_relative_to(partial.resolve()):
                raise invalid(f"Object name {info.name!r} in {folder.uri} escapes the folder.")
            destination.parent.mkdir(parents=True, exist_ok=True)
            blob = bucket.blob(
                prefix + info.name, generation=int(info.generation) if info.generation else None
            )
            blob.download_to_filename(str(destination))

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(download, files))
        (partial / COMPLETE).write_text(folder.uri + "\n")
        with _FINISH:
            if (target / COMPLETE).is_file():  # another deploy of the same upload won the race
                shutil.rmtree(partial, ignore_errors=True)
            else:
                shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier copy
                partial.rename(target)
        return target
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _api_error(gcs_uri: str, exc: AccessError) -> RpcError:
    from google.api_core import exceptions as api_exceptions

    cause = exc.__cause__
    if isinstance(cause, api_exceptions.NotFound):
        return not_found(
            f"custom_model.gcs_uri {gcs_uri}: {exc.message} Create the bucket and upload the "
            "model folder, or fix the URI."
        )
    if isinstance(cause, api_exceptions.Forbidden | api_exceptions.Unauthorized):
        return RpcError(
            f"The Vertex AI service agent cannot read {gcs_uri}: {exc.message} {exc.hint}",
            http_status=403,
        )
    return RpcError(f"Cannot list {gcs_uri}: {exc.message} {exc.hint}".strip(), http_status=503)
