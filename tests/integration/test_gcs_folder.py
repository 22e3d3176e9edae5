"""GcsFolder against fake-gcs-server: listing, ranged reads, counters, request counts, errors,
and what the validate handler requests over all the events of one upload."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeldrop.adapters.gcs_folder import GcsFolder
from modeldrop.catalog import file_rules
from modeldrop.domain.deployment import Deployment, State
from modeldrop.errors import AccessError, UsageError
from modeldrop.local.emulators import free_port
from modeldrop.service.validate import on_object_finalized
from tests.fixtures.model_folders import INDEX, SHARD1, SHARD2, write_valid
from tests.unit.service.fakes import make_harness

WEIGHTS = bytes(range(256)) * 20  # 5120 bytes
FOLDER = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": WEIGHTS,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
    "empty.txt": b"",
}
OUTSIDE = {
    "models/tiny-2/config.json": b"{}",  # shares the string prefix "models/tiny"
    "models/config.json": b"{}",
    "gcloud/tmp/parallel_composite_uploads/part": b"xx",
}


@pytest.fixture(scope="module")
def bucket(fake_gcs):
    """A fresh bucket holding gs://BUCKET/models/tiny (FOLDER) plus objects outside it."""
    bucket = fake_gcs.client.create_bucket(f"md-{uuid.uuid4().hex[:12]}")
    for name, data in FOLDER.items():
        bucket.blob(f"models/tiny/{name}").upload_from_string(data)
    for name, data in OUTSIDE.items():
        bucket.blob(name).upload_from_string(data)
    bucket.blob("models/tiny/tokenizer/").upload_from_string(b"")  # console "folder" placeholder
    return bucket


@pytest.fixture
def folder(bucket) -> GcsFolder:
    return GcsFolder(f"gs://{bucket.name}/models/tiny")


def server_requests(fake_gcs, offset: int, bucket_name: str) -> list[str]:
    """Requests about `bucket_name` in fake-gcs-server's access log after byte `offset`."""
    time.sleep(0.3)  # let the log line, or any background request, land
    log = fake_gcs.emulator.log_path.read_bytes()[offset:].decode()
    return re.findall(rf'"([A-Z]+ /\S*/b/{re.escape(bucket_name)}[/?]\S*)', log)


def test_list_files_is_recursive_relative_and_ignores_other_prefixes(folder, bucket):
    files = folder.list_files()

    assert [f.name for f in files] == sorted(FOLDER)
    assert {f.name: f.size for f in files} == {name: len(data) for name, data in FOLDER.items()}
    generations = {
        b.name.removeprefix("models/tiny/"): str(b.generation)
        for b in bucket.client.list_blobs(bucket, prefix="models/tiny/")
    }
    assert all(f.generation == generations[f.name] and f.generation.isdigit() for f in files)
    assert folder.location == f"gs://{bucket.name}/models/tiny"


def test_trailing_slash_and_bucket_root(bucket):
    with_slash = GcsFolder(f"gs://{bucket.name}/models/tiny/").list_files()
    assert [f.name for f in with_slash] == sorted(FOLDER)
    root = [f.name for f in GcsFolder(f"gs://{bucket.name}").list_files()]
    assert "models/tiny/model.safetensors" in root and "models/config.json" in root


@pytest.mark.parametrize("name", ["probe-a[b]", "a*?", "名前 ü x"])
def test_folder_names_are_literal_prefixes(bucket, name):
    """No wildcards: [, *, ? are characters of the name; spaces and unicode work too."""
    bucket.blob(f"models/{name}/config.json").upload_from_string(b"{}")
    bucket.blob(f"models/{name}x/config.json").upload_from_string(b"[]")  # a longer name
    folder = GcsFolder(f"gs://{bucket.name}/models/{name}")
    assert [f.name for f in folder.list_files()] == ["config.json"]
    assert folder.read_range("config.json", 0, 10) == b"{}"


def test_listing_stops_one_past_the_bound(bucket, monkeypatch):
    monkeypatch.setitem(file_rules()["limits"], "listed_files", 2)
    files = GcsFolder(f"gs://{bucket.name}/models/tiny").list_files()
    assert [f.name for f in files] == sorted(FOLDER)[:3]  # bound + 1: enough to refuse it


def test_missing_prefix_lists_nothing(bucket):
    assert GcsFolder(f"gs://{bucket.name}/models/nope").list_files() == []


def test_read_range_returns_exact_bytes(folder):
    folder.list_files()
    assert folder.read_range("model.safetensors", 0, 8) == WEIGHTS[:8]
    assert folder.read_range("model.safetensors", 1000, 300) == WEIGHTS[1000:1300]
    tokenizer = FOLDER["tokenizer/tokenizer.json"]
    assert folder.read_range("tokenizer/tokenizer.json", 2, 7) == tokenizer[2:9]


def test_read_range_beyond_end_of_file(folder):
    size = len(WEIGHTS)
    assert folder.read_range("model.safetensors", size - 10, 100) == WEIGHTS[-10:]
    assert folder.read_range("model.safetensors", size, 10) == b""
    assert folder.read_range("model.safetensors", size + 50, 10) == b""
    assert folder.read_range("empty.txt", 0, 10) == b""
    assert folder.read_range("model.safetensors", 5, 0) == b""


def test_read_tail(folder):
    assert folder.read_tail("model.safetensors", 16) == WEIGHTS[-16:]
    assert folder.read_tail("model.safetensors", 10**6) == WEIGHTS
    assert folder.read_tail("config.json", 4) == FOLDER["config.json"][-4:]
    assert folder.read_tail("empty.txt", 8) == b""
    assert folder.read_tail("model.safetensors", 0) == b""


def test_counters_are_exact_under_concurrent_reads(folder):
    folder.list_files()
    ranges = [(i * 37 % len(WEIGHTS), 1 + i % 50) for i in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        chunks = list(pool.map(lambda r: folder.read_range("model.safetensors", *r), ranges))

    assert chunks == [WEIGHTS[start : start + length] for start, length in ranges]
    assert folder.reads == 64
    assert folder.bytes_read == sum(len(c) for c in chunks)


def test_each_read_is_one_http_request(fake_gcs, bucket):
    """One listing request, then exactly one ranged GET per read and no metadata requests."""
    offset = fake_gcs.emulator.log_path.stat().st_size
    folder = GcsFolder(f"gs://{bucket.name}/models/tiny")  # a fresh client, as in production

    folder.list_files()
    folder.read_range("model.safetensors", 0, 8)
    folder.read_range("config.json", 0, 100)
    folder.read_tail("model.safetensors", 64)

    requests = server_requests(fake_gcs, offset, bucket.name)
    assert len(requests) == 4, requests
    assert requests[0].startswith(f"GET /storage/v1/b/{bucket.name}/o?")
    for request in requests[1:]:
        assert request.startswith("GET /download/storage/v1/") and "generation=" in request
    assert (folder.reads, folder.bytes_read) == (3, 8 + len(FOLDER["config.json"]) + 64)


def test_upload_events_list_once_each_and_download_the_index_once(fake_gcs, bucket, tmp_path):
    """Every finalize event of an upload (index first, shards last, as a parallel uploader
    finishes them) lists the folder once; the index is downloaded once to decide and once by
    the validation, and again only when a new generation of it lands."""
    model = write_valid(tmp_path / "model")
    h = make_harness(tmp_path, MODELDROP_BUCKET=bucket.name)
    h.ctx.open_folder = lambda uri: GcsFolder(uri, fake_gcs.client)
    order = [*sorted(p.name for p in model.iterdir() if p.suffix == ".json"), SHARD1, SHARD2]

    def deliver(names: list[str]) -> tuple[Deployment | None, list[str], list[str]]:
        offset = fake_gcs.emulator.log_path.stat().st_size
        for name in names:
            bucket.blob(f"models/events/{name}").upload_from_filename(model / name)
            result = on_object_finalized(h.ctx, bucket.name, f"models/events/{name}")
        gets = [r for r in server_requests(fake_gcs, offset, bucket.name) if r.startswith("GET")]
        listings = [r for r in gets if r.startswith(f"GET /storage/v1/b/{bucket.name}/o?")]
        return result, listings, [r for r in gets if r.split("?")[0].endswith(INDEX)]

    record, listings, index_reads = deliver(order)
    assert record.state is State.VALIDATED
    assert (len(listings), len(index_reads)) == (len(order), 2)
    newer, listings, index_reads = deliver([INDEX])
    assert newer.state is State.VALIDATED and newer.id != record.id
    assert (len(listings), len(index_reads)) == (1, 2)


def test_read_without_listing_reads_latest_generation(bucket):
    folder = GcsFolder(f"gs://{bucket.name}/models/tiny")
    assert folder.read_range("config.json", 0, 5) == FOLDER["config.json"][:5]


def test_object_replaced_after_listing(bucket):
    bucket.blob("models/moving/config.json").upload_from_string(b"old")
    folder = GcsFolder(f"gs://{bucket.name}/models/moving")
    folder.list_files()
    bucket.blob("models/moving/config.json").upload_from_string(b"new")

    with pytest.raises(AccessError, match="changed or was deleted"):
        folder.read_range("config.json", 0, 3)


def test_missing_object(folder):
    with pytest.raises(AccessError, match=r"nope\.bin in gs://") as err:
        folder.read_range("nope.bin", 0, 10)
    assert err.value.hint
    assert folder.reads == 0


def test_missing_bucket(fake_gcs):
    folder = GcsFolder("gs://no-such-bucket-modeldrop/models/x")
    with pytest.raises(AccessError, match="no-such-bucket-modeldrop") as err:
        folder.list_files()
    assert "bucket" in err.value.hint.lower()
    assert err.value.code == "ACCESS_ERROR"


def test_emulator_not_running(monkeypatch):
    host = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    folder = GcsFolder("gs://some-bucket/models/x", retry=None)
    with pytest.raises(AccessError) as err:
        folder.list_files()
    assert host in err.value.hint and "http://" in err.value.hint


def test_emulator_host_without_scheme(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    with pytest.raises(AccessError, match="no scheme") as err:
        GcsFolder("gs://some-bucket/models/x")
    assert "http://127.0.0.1:4443" in err.value.hint


def test_no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(AccessError, match="No Google Cloud credentials") as err:
        GcsFolder("gs://some-bucket/models/x")
    assert "gcloud auth application-default login" in err.value.hint


class _Forbidden(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"error": {"code": 403, "message": "denied"}}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def forbidding_server(monkeypatch) -> Iterator[str]:
    """A local endpoint answering 403 to everything, set as STORAGE_EMULATOR_HOST."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_forbidden_names_the_role(forbidding_server):
    folder = GcsFolder("gs://locked-bucket/models/x")
    with pytest.raises(AccessError, match="No permission") as err:
        folder.list_files()
    assert "roles/storage.objectViewer" in err.value.hint
    with pytest.raises(AccessError, match=r"config.json in gs://locked-bucket/models/x"):
        folder.read_range("config.json", 0, 10)


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/x", "gs://", "gs://UPPER/x", "gs://b/x", "gs://bucket/a//b", "gs://bucket/../x"],
)
def test_malformed_uri(uri):
    with pytest.raises(UsageError):
        GcsFolder(uri)
