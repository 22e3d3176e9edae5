"""A model folder under a gs:// prefix, read through the validation storage port.

Every read is one ranged GET of the object's media (no metadata request): blobs are built
locally, pinned to the generation seen when listing, and downloaded raw without a checksum.
"""

from __future__ import annotations

import os
import re
import threading

import google.cloud.storage as storage
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage.retry import DEFAULT_RETRY
from requests.adapters import HTTPAdapter

from modeldrop import catalog
from modeldrop.domain.completion import name_problem
from modeldrop.domain.findings import excerpt
from modeldrop.domain.folder import FileInfo
from modeldrop.errors import AccessError, UsageError

EMULATOR_PROJECT = "modeldrop-local"
RETRY = DEFAULT_RETRY.with_timeout(30.0)  # transient errors (429, 5xx, resets) only
TIMEOUT = 60.0
POOL_SIZE = 32  # HTTP connections kept per host: one per reading thread

# Bucket names: 3-63 characters (up to 222 in dotted names), lowercase letters, digits,
# dashes, underscores and dots, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_LIST_FIELDS = "items(name,size,generation),nextPageToken"
# What a failed request can raise: HTTP errors, retries exhausted, auth, transport.
_IO_ERRORS = (
    api_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    requests.RequestException,
    ConnectionError,
)


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split "gs://BUCKET/PREFIX" into (bucket, prefix); the prefix has no slash at either end.

    The prefix is literal: *, ?, [ and ] are characters of the name, not wildcards.
    """
    if not uri.startswith("gs://"):
        raise UsageError(f"{excerpt(uri)} is not a gs:// URI.", "Use gs://BUCKET/PATH/TO/MODEL.")
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    parts = bucket.split(".")
    if not _BUCKET.fullmatch(bucket) or any(not 0 < len(part) <= 63 for part in parts):
        raise UsageError(
            f"{excerpt(uri)} does not name a valid bucket ({excerpt(bucket)}).",
            "Bucket names have 3-63 lowercase letters, digits, dashes, underscores or dots.",
        )
    prefix = prefix.strip("/")
    problem = name_problem(prefix) if prefix else None
    if problem:
        raise UsageError(
            f"{excerpt(uri)} is not a folder path: {problem}.",
            "Use gs://BUCKET/PATH/TO/MODEL without control characters, '//', '.' or '..'.",
        )
    return bucket, prefix


def default_client() -> storage.Client:
    """A storage client for Google Cloud, or for the emulator named by STORAGE_EMULATOR_HOST."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        if emulator:
            if "://" not in emulator:
                raise AccessError(
                    f"STORAGE_EMULATOR_HOST={emulator} has no scheme.",
                    f"Set STORAGE_EMULATOR_HOST=http://{emulator}.",
                )
            project = os.environ.get("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
            client = storage.Client(project=project, credentials=AnonymousCredentials())
        else:
            client = storage.Client()
    except auth_exceptions.GoogleAuthError as exc:
        raise AccessError(
            f"No Google Cloud credentials: {exc}",
            "Run gcloud auth application-default login, or point STORAGE_EMULATOR_HOST at "
            "fake-gcs-server (http://HOST:PORT).",
        ) from exc
    # google-cloud-storage 3.x fetches each bucket's metadata in a background thread for
    # tracing attributes: an extra buckets.get per bucket, which object readers may not be
    # allowed; the library treats a falsy cache as "disabled".
    client._bucket_metadata_cache = None
    # Reads come from a thread pool; urllib3 keeps 10 connections per host by default and
    # discards (and later reopens) the others with a "Connection pool is full" warning.
    adapter = HTTPAdapter(pool_maxsize=POOL_SIZE)
    for scheme in ("https://", "http://"):
        client._http.mount(scheme, adapter)
    return client


class GcsFolder:
    """Ranged reads over the objects under a gs:// prefix; safe to read from several threads."""

    def __init__(
        self, uri: str, client: storage.Client | None = None, *, retry: Retry | None = RETRY
    ) -> None:
        self.bucket_name, self.prefix = parse_gs_uri(uri)
        self.uri = f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")
        self.client = client if client is not None else default_client()
        self.retry = retry
        self.bytes_read = 0
        self.reads = 0
        self._bucket = self.client.bucket(self.bucket_name)
        self._object_prefix = f"{self.prefix}/" if self.prefix else ""
        self._listed: dict[str, FileInfo] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.uri

    def list_files(self) -> list[FileInfo]:
        try:
            blobs = list(
                self.client.list_blobs(
                    self._bucket,
                    prefix=self._object_prefix,
                    max_results=catalog.file_rules()["limits"]["listed_files"] + 1,
                    fields=_LIST_FIELDS,
                    timeout=TIMEOUT,
                    retry=self.retry,
                )
            )
        except _IO_ERRORS as exc:
            raise self._access_error(exc) from exc
        cut = len(self._object_prefix)
        files = sorted(
            (
                FileInfo(blob.name[cut:], blob.size or 0, str(blob.generation))
                for blob in blobs
                if not blob.name.endswith("/")  # "folder" placeholders made by the console
            ),
            key=lambda info: info.name,
        )
        self._listed = {info.name: info for info in files}
        return files

    def read_range(self, name: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        if length == 0:
            return b""
        return self._download(name, start, start + length - 1)

    def read_tail(self, name: str, length: int) -> bytes:
        if length < 0:
            raise ValueError(f"bad tail length {length}")
        if length == 0:
            return b""
        return self._download(name, -length, None)  # suffix range "bytes=-length"

    def _download(self, name: str, start: int, end: int | None) -> bytes:
        listed = self._listed.get(name)
        blob = self._bucket.blob(
            self._object_prefix + name, generation=int(listed.generation) if listed else None
        )
        try:
            data = blob.download_as_bytes(
                start=start,
                end=end,
                raw_download=True,
                checksum=None,  # ranges carry no checksum; "auto" would only log about it
                timeout=TIMEOUT,
                retry=self.retry,
            )
        except api_exceptions.RequestRangeNotSatisfiable:
            data = b""  # the range starts at or after the end of the object
        except _IO_ERRORS as exc:
            raise self._access_error(exc, name, pinned=listed is not None) from exc
        with self._lock:
            self.reads += 1
            self.bytes_read += len(data)
        return data

    def _access_error(
        self, exc: Exception, name: str | None = None, pinned: bool = False
    ) -> AccessError:
        """The AccessError, with a hint, for a failed request (listing when `name` is None)."""
        where = f"{name} in {self.uri}" if name else self.uri
        if isinstance(exc, api_exceptions.NotFound):
            if name is None:
                return AccessError(
                    f"Bucket {self.bucket_name} not found (reading {self.uri}).",
                    "Check the bucket name and project; with the emulator, create the bucket.",
                )
            if pinned:
                return AccessError(
                    f"{where} changed or was deleted after it was listed.",
                    "Validate again once the upload has finished.",
                )
            return AccessError(f"{where} not found.", "List the folder to see which files exist.")
        if isinstance(exc, (api_exceptions.Forbidden, api_exceptions.Unauthorized)):
            return AccessError(
                f"No permission to read {where}.",
                f"Grant the caller roles/storage.objectViewer on gs://{self.bucket_name} "
                "(gcloud storage buckets add-iam-policy-binding).",
            )
        if isinstance(exc, auth_exceptions.GoogleAuthError):
            return AccessError(
                f"Cannot authenticate to read {where}: {exc}",
                "Run gcloud auth application-default login.",
            )
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        hint = (
            f"Check that fake-gcs-server runs at STORAGE_EMULATOR_HOST={emulator} "
            "(it must include http://)."
            if emulator
            else "Check the network connection; retry later if Cloud Storage is unavailable."
        )
        return AccessError(f"Cannot read {where}: {exc}", hint)
