"""`make demo` on a stack of its own: DEPLOYED, and the answer streamed through the api to the
user's document's prompt is the one the tiny model memorised."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

from tests.e2e.conftest import _missing


@pytest.fixture(scope="session")
def answering_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit tests' cache (tests/unit/local/test_answering_model.py): trained once."""
    return tmp_path_factory.getbasetemp() / "answering-model"


def test_the_demo_streams_the_memorised_answer(answering_cache, tmp_path, capsys) -> None:
    if reason := _missing():
        pytest.skip(reason)
    from modeldrop.local import demo
    from modeldrop.local.answering_model import load_answers
    from modeldrop.local.stack import StackConfig

    config = StackConfig(state_dir=tmp_path / "state", tick_seconds=1.0)
    with mock.patch.dict(os.environ):  # the demo's stack sets the emulators' variables
        code = demo.run(config, cache_dir=answering_cache, timeout=300)
    out = capsys.readouterr().out
    assert code == 0, out
    asked = load_answers()[0]
    assert asked.question == "How to tell the time by looking at the sky?"
    assert f"   question: {asked.question}\n" in out
    answered = out.split("   answer:   ", 1)[1].split("\n", 1)[0]
    assert answered == asked.answer, out
    assert "it memorised the answers and\n   knows nothing else" in out
    assert "not the memorised answer" not in out
