"""The deployment state machine: allowed transitions, history, deterministic ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldrop.domain.deployment import (
    HISTORY_LIMIT,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    State,
    advance,
    deployment_id,
    new_deployment,
    shaped_like_id,
    snapshot,
)

AT = datetime(2026, 11, 24, 12, tzinfo=UTC)


def test_happy_path_records_history_and_counts_events():
    d = new_deployment("bkt", "models/qwen-ft/", "fp1", 42, AT)
    assert (d.state, d.folder, d.model, d.event_sequence) == (
        State.DETECTED,
        "models/qwen-ft",
        "qwen-ft",
        1,
    )
    for i, state in enumerate(
        [State.VALIDATING, State.VALIDATED, State.DEPLOYING, State.DEPLOYED], 1
    ):
        d = advance(d, state, AT + timedelta(seconds=i), note=state.lower())
    assert [t.state for t in d.history] == [
        State.DETECTED,
        State.VALIDATING,
        State.VALIDATED,
        State.DEPLOYING,
        State.DEPLOYED,
    ]
    assert d.event_sequence == 5 and d.updated_at == AT + timedelta(seconds=4)


@pytest.mark.parametrize("start", list(State))
def test_only_listed_transitions_are_allowed(start):
    d = new_deployment("b", "models/m", "fp", 1, AT)
    object.__setattr__(d, "state", start)
    for target in State:
        if target in TRANSITIONS[start]:
            assert advance(d, target, AT).state is target
        else:
            with pytest.raises(InvalidTransition) as caught:
                advance(d, target, AT)
            assert caught.value.code == "INVALID_TRANSITION" and caught.value.hint


def test_terminal_states_and_superseding():
    assert {State.REJECTED, State.SUPERSEDED} == TERMINAL
    assert TRANSITIONS[State.UNDEPLOYED] == {State.VALIDATED}  # only a redeploy leaves it
    pre_deploy = {s for s, targets in TRANSITIONS.items() if State.SUPERSEDED in targets}
    assert pre_deploy == {State.DETECTED, State.VALIDATING, State.VALIDATED}


def test_history_is_bounded():
    d = new_deployment("b", "models/m", "fp", 1, AT)
    for i in range(HISTORY_LIMIT + 10):
        object.__setattr__(d, "state", State.DETECTED)
        d = advance(d, State.VALIDATING, AT + timedelta(seconds=i))
    assert len(d.history) == HISTORY_LIMIT


def test_ids_are_deterministic_and_distinct_per_fingerprint():
    assert deployment_id("b", "models/m", "fp") == deployment_id("b", "models/m", "fp")
    assert deployment_id("b", "models/m", "fp") != deployment_id("b", "models/m", "fp2")
    assert deployment_id("b", "models/Llama 3!", "fp").startswith("llama-3-")


def test_snapshot_is_plain_json():
    import json

    data = snapshot(advance(new_deployment("b", "models/m", "fp", 1, AT), State.VALIDATING, AT))
    assert json.loads(json.dumps(data))["history"][1]["state"] == "VALIDATING"
    assert data["created_at"] == AT.isoformat()


def test_a_transition_starts_the_claims_again_and_leases_expire():
    d = advance(new_deployment("b", "models/m", "fp", 1, AT), State.VALIDATING, AT, claims=3)
    assert d.claims == 3 and advance(d, State.FAILED, AT).claims == 0
    assert d.lease_expired(AT)  # nobody holds it
    held = replace(d, lease_expires_at=AT + timedelta(seconds=1))
    assert not held.lease_expired(AT) and held.lease_expired(AT + timedelta(seconds=1))


@given(st.text(min_size=1, max_size=300), st.text(max_size=64))
def test_every_deployment_id_is_shaped_like_one(folder, fingerprint):
    assert shaped_like_id(deployment_id("b", f"models/{folder}", fingerprint))


def test_model_names_are_not_shaped_like_ids():
    for name in ("tiny-llama", "Qwen2.5-0.5B", "llama-ft-v2", "a" * 60, "x-0123456789ab-y"):
        assert not shaped_like_id(name)
