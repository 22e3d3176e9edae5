"""`modeldrop validate gs://...` on fake-gcs-server: the verdict on disk, from header reads only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeldrop.adapters.gcs_folder import GcsFolder
from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.cli import main
from modeldrop.validation.safetensors_header import FIRST_READ_BYTES
from modeldrop.validation.validator import validate_folder
from tests.fixtures.bad_folders import CORPUS
from tests.fixtures.model_folders import write_valid

BUCKET = "validate-bucket"


def upload(client, local: Path, prefix: str) -> str:
    bucket = client.bucket(BUCKET)
    if not bucket.exists():
        client.create_bucket(BUCKET)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            bucket.blob(f"{prefix}/{path.relative_to(local).as_posix()}").upload_from_filename(path)
    return f"gs://{BUCKET}/{prefix}"


@pytest.mark.parametrize(
    "name", [None, "truncated_shard", "missing_shard", "gptq", "malicious_pickle"]
)
def test_gcs_verdict_equals_local_verdict(fake_gcs, tmp_path, name):
    root = write_valid(tmp_path / "model")
    if name:
        CORPUS[name][0](root)
    uri = upload(fake_gcs.client, root, f"models/{name or 'ok'}")
    remote = GcsFolder(uri, fake_gcs.client)
    assert validate_folder(remote).as_dict() == validate_folder(LocalFolder(root)).as_dict()


def test_gcs_validation_reads_headers_only(fake_gcs, tmp_path):
    root = write_valid(tmp_path / "model")
    uri = upload(fake_gcs.client, root, "models/headers-only")
    folder = GcsFolder(uri, fake_gcs.client)
    verdict = validate_folder(folder)
    small_files = sum(p.stat().st_size for p in root.iterdir() if p.suffix == ".json")
    weights = sum(p.stat().st_size for p in root.glob("*.safetensors"))
    assert verdict.accepted
    # two shards; config, tokenizer_config, generation_config, tokenizer.json and the index
    assert folder.reads <= 2 * 2 + 5
    assert folder.bytes_read <= small_files + 2 * FIRST_READ_BYTES < weights / 100


def test_cli_exit_codes_and_json(fake_gcs, tmp_path, capsys):
    ok = upload(fake_gcs.client, write_valid(tmp_path / "ok"), "models/cli-ok")
    bad_root = write_valid(tmp_path / "bad")
    CORPUS["awq"][0](bad_root)
    bad = upload(fake_gcs.client, bad_root, "models/cli-bad")

    assert main(["validate", ok, "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert list(verdict) == [
        "verdict",
        "architecture",
        "model_type",
        "matched_base",
        "parameters",
        "weight_bytes",
        "attention_heads",
        "recommended_machine",
        "findings",
        "candidates",
    ]
    assert verdict["matched_base"] == "Qwen2.5-0.5B"
    assert main(["validate", bad]) == 1
    assert "QUANTIZED_CONFIG" in capsys.readouterr().out
    assert main(["validate", "gs://no-such-bucket-here/models/x"]) == 2
    assert main(["validate", "gs://Bad_Bucket!/x"]) == 2
    assert "error" in capsys.readouterr().err
