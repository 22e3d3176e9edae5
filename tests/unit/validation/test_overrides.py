"""modeldrop.yaml: valid files give values; anchors, aliases, tags, deep nesting and floods give
one short OVERRIDES_INVALID finding, fast, whatever the text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldrop.validation.overrides import MAX_DEPTH, MAX_NODES, parse_overrides

FILE = "modeldrop.yaml"


def codes(text: str) -> list[str]:
    return [f.code for f in parse_overrides(text.encode(), FILE).findings]


def test_a_valid_file_gives_its_values():
    text = (
        "machine_spec: {machine_type: g2-standard-8, accelerator_type: NVIDIA_L4, "
        "accelerator_count: 1}\nreplicas: {min: 1, max: 2}\nlabels: {team: ml}\n"
    )
    overrides = parse_overrides(text.encode(), FILE)
    assert overrides.findings == []
    assert overrides.values["labels"] == {"team": "ml"}
    assert overrides.machine_spec is not None


def test_the_alias_bomb_is_refused_at_once():
    lines = ['a: &a ["lol-project-a","lol-project-a","lol-project-a"]']
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("private_endpoint: {project_allowlist: [*h,*h,*h,*h,*h,*h,*h,*h,*h]}")
    started = time.perf_counter()
    findings = parse_overrides("\n".join(lines).encode(), FILE).findings
    assert time.perf_counter() - started < 1.0  # 9**8 copies if it were expanded
    assert [f.code for f in findings] == ["OVERRIDES_INVALID"]
    assert "anchors or aliases" in findings[0].message


def test_a_lone_anchor_is_refused_too():
    assert codes("labels: &x {team: ml}\n") == ["OVERRIDES_INVALID"]


def test_explicit_tags_are_refused():
    assert codes("labels: !!python/object/apply:os.system ['id']\n") == ["OVERRIDES_INVALID"]
    assert codes("model_display_name: !custom x\n") == ["OVERRIDES_INVALID"]


def test_nesting_and_floods_are_bounded():
    assert codes("labels: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)) == [
        "OVERRIDES_INVALID"
    ]
    assert codes("labels: [" + "1," * MAX_NODES + "1]") == ["OVERRIDES_INVALID"]


def test_schema_errors_never_reprint_long_values():
    findings = parse_overrides(("model_display_name: " + "x" * 60_000).encode(), FILE).findings
    assert len(findings) == 1 and len(findings[0].message) < 400


yaml_scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.text(alphabet="abcxyz-_ ", max_size=12),
    st.sampled_from(["true", "null", "2026-12-01", "1e400", "0x1F", "~", "'quoted'"]),
)


def nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["&a", "*a", "!!str", "!!python/name:os.system", ""]), max_size=4),
    st.lists(yaml_scalars, min_size=1, max_size=5),
    st.integers(min_value=1, max_value=40),  # inside a flow list, marks are YAML syntax
    st.sampled_from(["labels", "replicas", "model_display_name", "private_endpoint", "x"]),
)
def test_any_yaml_with_anchors_tags_or_nesting_only_gives_findings(marks, scalars, depth, key):
    leaf = ", ".join(f"{mark} {value}".strip() for mark, value in zip(marks, scalars, strict=False))
    text = f"{key}: {nested(depth, leaf or '1')}\n"
    overrides = parse_overrides(text.encode(), FILE)  # never raises
    assert all(f.code == "OVERRIDES_INVALID" for f in overrides.findings)
    assert all(len(f.message) < 600 for f in overrides.findings)
    if any(mark.startswith(("&", "*", "!")) for mark in marks[: len(scalars)]):
        assert overrides.findings and overrides.values == {}
    if depth + 1 > MAX_DEPTH:
        assert overrides.findings


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_give_findings(data):
    overrides = parse_overrides(data, FILE)
    assert all(f.code == "OVERRIDES_INVALID" for f in overrides.findings)


def test_a_placement_block_is_accepted():
    text = (
        "placement:\n  regions: [us-central1, europe-west4]\n  accelerators: [NVIDIA_L4]\n"
        "  max_hourly_usd: 2.5\n  spot: prefer\n"
    )
    overrides = parse_overrides(text.encode(), FILE)
    assert overrides.findings == []
    assert overrides.values["placement"]["spot"] == "prefer"


@pytest.mark.parametrize(
    "block",
    [
        "{regions: [US-CENTRAL1]}",
        "{regions: [us-central1, us-central1]}",
        "{regions: []}",
        "{regions: [" + ", ".join(f"us-east{i}" for i in range(21)) + "]}",
        "{accelerators: [nvidia_l4]}",
        "{accelerators: [" + ", ".join(f"GPU_{i}" for i in range(21)) + "]}",
        "{max_hourly_usd: 0}",
        "{max_hourly_usd: 10001}",
        "{max_hourly_usd: cheap}",
        "{spot: always}",
        "{spot: true}",
        "{zones: [us-central1-a]}",
        "[us-central1]",
    ],
)
def test_an_invalid_placement_block_is_refused(block):
    assert codes(f"placement: {block}\n") == ["OVERRIDES_INVALID"]


def test_scale_to_zero_and_idle_undeploy_are_kept_as_given():
    text = (
        "scale_to_zero: {idle_scaledown_seconds: 300}\nreplicas: {max: 3}\n"
        "idle_undeploy_after_seconds: 86400\n"
    )
    overrides = parse_overrides(text.encode(), FILE)
    assert overrides.findings == []
    assert overrides.values["scale_to_zero"] == {"idle_scaledown_seconds": 300}
    assert overrides.values["idle_undeploy_after_seconds"] == 86400
    bounds = "scale_to_zero: {idle_scaledown_seconds: 28800}\nidle_undeploy_after_seconds: 0\n"
    assert parse_overrides(bounds.encode(), FILE).values == {
        "scale_to_zero": {"idle_scaledown_seconds": 28800},
        "idle_undeploy_after_seconds": 0,
    }
    assert codes("idle_undeploy_after_seconds: 2592000\n") == []  # 30 days


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "2592001",
        "1" + "0" * 40,
        "3600.0",
        "1.5",
        ".inf",
        ".nan",
        "'3600'",
        "1h",
        "true",
        "null",
        "[3600]",
        "{seconds: 3600}",
    ],
)
def test_idle_undeploy_after_seconds_takes_whole_seconds_up_to_30_days(value):
    overrides = parse_overrides(f"idle_undeploy_after_seconds: {value}\n".encode(), FILE)
    assert overrides.findings and overrides.values == {}
    for finding in overrides.findings:  # .inf is no integer and above the maximum: two
        assert finding.code == "OVERRIDES_INVALID" and finding.hint
        assert finding.message.startswith(f"{FILE}: idle_undeploy_after_seconds: ")
        assert len(finding.message) < 400


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ("{idle_scaledown_seconds: 299}", "less than the minimum of 300"),
        ("{idle_scaledown_seconds: 28801}", "greater than the maximum of 28800"),
        ("{idle_scaledown_seconds: -300}", "less than the minimum of 300"),
        ("{idle_scaledown_seconds: " + "9" * 50 + "}", "maximum of 28800"),
        ("{idle_scaledown_seconds: 600.0}", "is not of type 'integer'"),
        ("{idle_scaledown_seconds: 600.5}", "is not of type 'integer'"),
        ("{idle_scaledown_seconds: '600'}", "is not of type 'integer'"),
        ("{idle_scaledown_seconds: true}", "is not of type 'integer'"),
        ("{idle_scaledown_seconds: 600, min_scaleup_seconds: 600}", "min_scaleup_seconds"),
        ("{idle_scaledown_seconds: 600, enabled: true}", "enabled"),
        ("{}", "'idle_scaledown_seconds' is a required property"),
        ("true", "is not of type 'object'"),
        ("600", "is not of type 'object'"),
        ("null", "is not of type 'object'"),
        ("[600]", "is not of type 'object'"),
    ],
)
def test_an_invalid_scale_to_zero_block_is_refused(block, needle):
    overrides = parse_overrides(f"scale_to_zero: {block}\n".encode(), FILE)
    assert [f.code for f in overrides.findings] == ["OVERRIDES_INVALID"]
    assert overrides.values == {}
    finding = overrides.findings[0]
    assert finding.message.startswith(f"{FILE}: scale_to_zero")
    assert needle in finding.message and finding.hint


def test_scale_to_zero_refuses_a_minimum_of_replicas_with_its_own_hint():
    text = "scale_to_zero: {idle_scaledown_seconds: 600}\nreplicas: {min: 1, max: 2}\n"
    overrides = parse_overrides(text.encode(), FILE)
    assert overrides.values == {}
    [finding] = overrides.findings
    assert finding.code == "OVERRIDES_INVALID" and finding.file == FILE
    assert "replicas.min (1) contradicts scale_to_zero" in finding.message
    assert "min_replica_count 0" in finding.message
    assert finding.hint.startswith("Remove replicas.min")


def test_integers_elsewhere_are_whole_numbers_too():
    assert codes("replicas: {min: 1.0}\n") == ["OVERRIDES_INVALID"]
    assert codes("smoke_test: {max_tokens: 8.0}\n") == ["OVERRIDES_INVALID"]
    assert codes("placement: {max_hourly_usd: 2}\n") == []  # a number may be whole


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.integers(-10, 3_000_000), st.integers(-(10**20), 10**20)),
    st.one_of(st.integers(0, 30_000), st.integers(-(10**6), 10**6)),
)
def test_any_integers_are_kept_exactly_when_within_the_bounds(idle, scaledown):
    text = (
        f"idle_undeploy_after_seconds: {idle}\n"
        f"scale_to_zero: {{idle_scaledown_seconds: {scaledown}}}\n"
    )
    overrides = parse_overrides(text.encode(), FILE)
    valid = 0 <= idle <= 30 * 24 * 3600 and 300 <= scaledown <= 28800
    assert (overrides.findings == []) is valid
    if valid:
        assert overrides.values["idle_undeploy_after_seconds"] == idle
        assert overrides.values["scale_to_zero"]["idle_scaledown_seconds"] == scaledown
