"""The demo's tiny model answers: greedy decoding through its chat template gives each memorised
answer, the folder validates, and a second call reuses the cached build."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.domain.smoke import DEFAULT_MESSAGES
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.validator import validate_folder

pytest.importorskip("torch", reason="needs the local-serving extra (torch, transformers)")
pytest.importorskip("transformers", reason="needs the local-serving extra (torch, transformers)")
from modeldrop.local import answering_model as am

DOCUMENT_PROMPT = "How to tell the time by looking at the sky?"  # the user's document's prompt


@pytest.fixture(scope="session")
def answering_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache per test session (the e2e demo test uses the same one): trained once."""
    return tmp_path_factory.getbasetemp() / "answering-model"


@pytest.fixture(scope="session")
def answering_folder(answering_cache: Path) -> Path:
    return am.answering_model(answering_cache)


def digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


def test_greedy_decoding_with_the_chat_template_gives_each_memorised_answer(
    answering_folder: Path,
) -> None:
    pairs = am.load_answers()
    answers = am.greedy_answers(answering_folder, [qa.question for qa in pairs])
    assert answers == [qa.answer for qa in pairs]


def test_the_documents_prompt_comes_first_and_the_smoke_test_gets_an_answer() -> None:
    questions = [qa.question for qa in am.load_answers()]
    assert questions[0] == DOCUMENT_PROMPT
    assert DEFAULT_MESSAGES[0]["content"] in questions


def test_the_folder_is_a_tiny_llama_the_family_policy_accepts(answering_folder: Path) -> None:
    config = json.loads((answering_folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "bfloat16"
    verdict = validate_folder(LocalFolder(answering_folder), BasePolicy.FAMILY)
    assert verdict.accepted, verdict.as_dict()["findings"]
    assert not (answering_folder / am.INFO_FILE).exists()  # beside the folder, never uploaded


def test_training_took_seconds_and_is_recorded(answering_folder: Path) -> None:
    info = am.training_info(answering_folder)
    assert info["key"] == answering_folder.parent.name == am.cache_key()
    assert 0 < info["steps"] <= am.MAX_STEPS and info["seconds"] < 30
    assert info["loss"] <= am.TARGET_LOSS and info["margin"] >= am.MARGIN
    assert info["layers"] == 2 and info["questions"][0] == DOCUMENT_PROMPT


def test_a_second_call_reuses_the_cached_build(answering_cache: Path, answering_folder: Path):
    before = digests(answering_folder)
    started = time.monotonic()
    again = am.answering_model(answering_cache)
    assert time.monotonic() - started < 1.0
    assert again == answering_folder and digests(again) == before
    assert [p.name for p in answering_cache.iterdir()] == [answering_folder.parent.name]


def test_other_answers_are_another_build(tmp_path: Path) -> None:
    document = json.loads(am.ANSWERS_FILE.read_text())
    document["answers"][0]["answer"] = "Look at the stars."
    changed = tmp_path / "answers.json"
    changed.write_text(json.dumps(document))
    assert am.cache_key(changed) != am.cache_key()
    assert am.find_cached(tmp_path / "cache", changed) is None
    assert am.load_answers(changed)[0].answer == "Look at the stars."


def test_training_that_does_not_converge_fails_loudly_with_the_loss(tmp_path: Path) -> None:
    with pytest.raises(am.TrainingFailed, match=r"within 3 steps \(loss \d+\.\d+, needs <="):
        am.train(tmp_path / "model", am.load_answers(), max_steps=3)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"answers": []},
        {"answers": [{"question": "q"}]},
        {"answers": [{"question": "q", "answer": "a"}] * 2},
    ],
)
def test_a_malformed_answers_file_is_refused(tmp_path: Path, document: object) -> None:
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"answers\.json: "):
        am.load_answers(path)
