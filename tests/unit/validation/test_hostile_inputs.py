"""The hostile corpus (tests/fixtures/hostile_folders.py, its table there): each folder ends in
its verdict with its code, with short messages and a verdict that fits a record."""

from __future__ import annotations

import json

import pytest

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.catalog import file_rules
from modeldrop.domain.findings import MAX_MESSAGE_CHARS
from modeldrop.validation.validator import validate_folder
from tests.fixtures.hostile_folders import CORPUS, HOSTILE_PICKLES, root_files, stray_shards
from tests.fixtures.model_folders import write_valid

VERDICT_BYTES = 256 * 1024


def test_the_corpus_is_large():
    assert len(CORPUS) >= 40 + len(HOSTILE_PICKLES)
    assert len({code for _, _, code in CORPUS.values()}) >= 15


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_folder_gets_its_verdict(tmp_path, name):
    mutate, expected, code = CORPUS[name]
    root = write_valid(tmp_path / name)
    mutate(root)
    verdict = validate_folder(LocalFolder(root))
    data = verdict.as_dict()
    assert data["verdict"] == expected, data["findings"][:5]
    assert code in [f["code"] for f in data["findings"]], data["findings"][:5]
    assert len(json.dumps(data)) < VERDICT_BYTES
    for finding in data["findings"]:
        assert len(finding["message"]) <= 2 * MAX_MESSAGE_CHARS + 1, finding["code"]


def test_findings_of_one_code_are_capped(tmp_path):
    root = write_valid(tmp_path / "strays")
    stray_shards(root)
    findings = validate_folder(LocalFolder(root)).as_dict()["findings"]
    strays = [f for f in findings if f["code"] == "INDEX_SHARD_UNREFERENCED"]
    assert len(strays) == 21
    assert "and 280 more INDEX_SHARD_UNREFERENCED" in strays[-1]["message"]


def test_a_listing_past_the_bound_is_rejected_without_reading(tmp_path, monkeypatch):
    root = write_valid(tmp_path / "listed")
    root_files(5)(root)  # 10 files in all
    monkeypatch.setitem(file_rules()["limits"], "listed_files", 7)
    folder = LocalFolder(root)
    verdict = validate_folder(folder)
    assert len(folder.list_files()) == 8  # the adapter stops one past the bound
    assert [f.code for f in verdict.errors] == ["FOLDER_TOO_MANY_FILES"]
    assert folder.reads == 0
