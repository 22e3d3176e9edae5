"""The broken-folder corpus (tests/fixtures/bad_folders.py, its table there): each folder is
rejected with its code, and none raises."""

from __future__ import annotations

import json

import pytest

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.validator import validate_folder
from tests.fixtures.bad_folders import CORPUS
from tests.fixtures.model_folders import write_valid


def test_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 25
    assert len({code for _, code in CORPUS.values()}) >= 25


def test_the_unbroken_folder_is_accepted(tmp_path):
    verdict = validate_folder(LocalFolder(write_valid(tmp_path / "ok")))
    assert verdict.accepted, verdict.as_dict()
    assert verdict.matched_base == "Qwen2.5-0.5B"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_folder_is_rejected_with_its_code(tmp_path, name):
    mutate, code = CORPUS[name]
    root = write_valid(tmp_path / name)
    mutate(root)
    verdict = validate_folder(LocalFolder(root), BasePolicy.STRICT)
    data = verdict.as_dict()
    assert data["verdict"] == "rejected"
    codes = [f["code"] for f in data["findings"] if f["severity"] == "error"]
    assert code in codes, data["findings"]
    finding = next(f for f in data["findings"] if f["code"] == code)
    assert len(finding["message"]) > 30
    json.dumps(data)  # the verdict is always serialisable


def test_operator_default_machine_is_used_when_it_fits_else_the_recommendation(tmp_path):
    from modeldrop.domain.findings import MachineSpec

    folder = LocalFolder(write_valid(tmp_path / "ok"))
    fits = MachineSpec("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1)
    verdict = validate_folder(folder, BasePolicy.STRICT, fits)
    assert verdict.recommended_machine == fits and verdict.accepted
    assert "MACHINE_DEFAULT" in [f.code for f in verdict.findings]
    odd = MachineSpec("g2-standard-48", "NVIDIA_L4", 4)  # 14 heads do not split over 4 GPUs
    verdict = validate_folder(folder, BasePolicy.STRICT, odd)
    assert verdict.accepted and verdict.recommended_machine != odd
    assert "MACHINE_DEFAULT_UNUSABLE" in [f.code for f in verdict.findings]
