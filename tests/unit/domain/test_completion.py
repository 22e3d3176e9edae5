"""Upload completion from a folder listing: auto and marker modes, out-of-order arrivals."""

from __future__ import annotations

import pytest

from modeldrop.catalog import file_rules
from modeldrop.domain.completion import (
    Completion,
    decide,
    fingerprint,
    folder_of,
    name_problem,
    revision,
)
from modeldrop.domain.folder import FileInfo

RULES = file_rules()
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
INDEX = {"model.safetensors.index.json": set(SHARDS)}
ALL = ["config.json", "tokenizer.json", "tokenizer_config.json", *SHARDS, *INDEX]


def listing(names, generation=1):
    return [FileInfo(n, 10, str(generation + i)) for i, n in enumerate(names)]


def auto(names, indexes=INDEX):
    return decide(
        listing(names), {k: v for k, v in indexes.items() if k in names}, "auto", "_READY", RULES
    )


def test_complete_folder():
    assert auto(ALL).completion is Completion.COMPLETE


@pytest.mark.parametrize("last", ALL)
def test_any_file_arriving_last_keeps_the_folder_waiting(last):
    decision = auto([n for n in ALL if n != last])
    assert decision.completion is Completion.WAIT
    assert decision.reason.startswith("waiting for")


def test_shards_without_their_index_wait():
    assert auto([n for n in ALL if not n.endswith("index.json")]).completion is Completion.WAIT


@pytest.mark.parametrize(
    ("named", "completion"),
    [
        (set(), Completion.COMPLETE),  # a broken index names no shard
        ({SHARDS[0], "sub/x.safetensors"}, Completion.COMPLETE),  # shards are root files
        ({SHARDS[0], "../x.safetensors"}, Completion.COMPLETE),
        ({SHARDS[0], ""}, Completion.COMPLETE),
        ({SHARDS[0], "x" * 2000}, Completion.COMPLETE),  # longer than a GCS name
        ({SHARDS[0], "a\nb.safetensors"}, Completion.COMPLETE),
        ({SHARDS[0], "model-00003-of-00003.safetensors"}, Completion.WAIT),  # on its way
    ],
)
def test_an_index_no_upload_can_satisfy_is_left_to_validation(named, completion):
    assert auto(ALL, {"model.safetensors.index.json": named}).completion is completion


def test_a_broken_index_still_waits_for_the_rest():
    names = [n for n in ALL if n != "config.json"]
    assert auto(names, {"model.safetensors.index.json": set()}).completion is Completion.WAIT


def test_single_file_model_needs_no_index():
    names = ["config.json", "tokenizer.model", "tokenizer_config.json", "model.safetensors"]
    assert auto(names, {}).completion is Completion.COMPLETE


def test_marker_mode_waits_for_the_marker_then_rejects_what_is_missing():
    files = listing(ALL)
    assert decide(files, INDEX, "marker", "_READY", RULES).completion is Completion.WAIT
    ready = decide(listing([*ALL, "_READY"]), INDEX, "marker", "_READY", RULES)
    assert ready.completion is Completion.COMPLETE
    broken = decide(listing(["config.json", "_READY"]), {}, "marker", "_READY", RULES)
    assert broken.completion is Completion.BROKEN and "tokenizer" in broken.reason


def test_fingerprint_changes_with_any_reupload_but_not_with_order():
    files = listing(ALL)
    assert fingerprint(files) == fingerprint(list(reversed(files)))
    changed = [*files[:-1], FileInfo(files[-1].name, files[-1].size, "999")]
    assert fingerprint(changed) != fingerprint(files)
    assert revision(changed) == 999


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("models/llama/config.json", "models/llama"),
        ("models/llama/sub/x.bin", "models/llama"),
        ("models/config.json", None),
        ("other/llama/config.json", None),
        ("gcloud/tmp/parallel_composite_uploads/x", None),
    ],
)
def test_folder_of(name, folder):
    assert folder_of(name, "models/") == folder


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("models/m/config.json", True),
        ("models/probe-a[b]/x*?.json", True),
        ("models/名 前 ü/config.json", True),
        ("models/m/", True),  # a folder placeholder
        ("models/../../x", False),
        ("models/./m/x", False),
        ("models//m/x", False),
        ("models/m/\x00x", False),
        ("models/m/\u0085x", False),
        ("models/\ud800/x", False),
        ("m" * 1025, False),
        ("", False),
    ],
)
def test_name_problem(name, ok):
    assert (name_problem(name) is None) is ok


def test_a_listing_past_the_bound_is_validated_and_rejected_not_waited_on():
    bound = RULES["limits"]["listed_files"]
    names = [f"junk/{i:06d}" for i in range(bound + 1)]  # no config: it would wait forever
    decision = auto(names)
    assert decision.completion is Completion.BROKEN and str(bound) in decision.reason
