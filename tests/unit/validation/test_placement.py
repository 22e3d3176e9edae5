"""Placement candidates: what fits, where it may go, cheapest (on demand) first, then by region
order; spot variants at their Spot price."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from modeldrop.catalog import machine_catalog
from modeldrop.cli import main
from modeldrop.domain.findings import MachineSpec
from modeldrop.validation.placement import candidates, placement_of
from tests.fixtures.model_folders import write_valid

GIB = 2**30
SIZING = {"gpu_memory_utilization": 0.9, "kv_cache_fraction": 0.2, "kv_cache_min_gib": 2}
CATALOG = {
    "sizing": SIZING,
    "accelerators": {"SMALL": {"memory_gib": 20}, "BIG": {"memory_gib": 80}},
    "machines": [
        {"machine_type": "s-1", "accelerator_type": "SMALL", "accelerator_count": 1,
         "usd_per_hour": 1.0, "spot_usd_per_hour": 0.4},
        {"machine_type": "b-1", "accelerator_type": "BIG", "accelerator_count": 1,
         "usd_per_hour": 3.0, "spot_usd_per_hour": 0.5},  # on Spot cheaper than s-2 on Spot
        {"machine_type": "s-2", "accelerator_type": "SMALL", "accelerator_count": 2,
         "usd_per_hour": 2.0, "spot_usd_per_hour": 0.9},
    ],
}  # fmt: skip
REGIONS = ("us-central1", "europe-west4")
SMALL_MODEL = GIB  # 1 GiB + 2 GiB headroom fits every machine


def ladder(weight_bytes=SMALL_MODEL, heads=None, regions=REGIONS, placement=None, pinned=None):
    found = candidates(weight_bytes, heads, CATALOG, regions, placement or {}, pinned)
    return [(c.region, c.machine_spec.machine_type, c.spot) for c in found]


def test_ordered_by_price_then_by_region_order():
    assert ladder() == [
        ("us-central1", "s-1", False),
        ("europe-west4", "s-1", False),
        ("us-central1", "s-2", False),
        ("europe-west4", "s-2", False),
        ("us-central1", "b-1", False),
        ("europe-west4", "b-1", False),
    ]
    first = candidates(SMALL_MODEL, None, CATALOG, REGIONS, {})[0]
    assert first.hourly_usd == Fraction(1) and first.machine_spec == MachineSpec("s-1", "SMALL", 1)
    assert first.as_dict() == {
        "region": "us-central1",
        "machine_spec": {
            "machine_type": "s-1",
            "accelerator_type": "SMALL",
            "accelerator_count": 1,
        },
        "spot": False,
        "hourly_usd": 1.0,
    }


def test_only_machines_that_fit():
    # 30 GiB needs 36 GiB: exactly what s-2 has usable at 90%; 31 GiB needs 37.2 GiB
    assert {m for _, m, _ in ladder(weight_bytes=30 * GIB)} == {"s-2", "b-1"}
    assert {m for _, m, _ in ladder(weight_bytes=31 * GIB)} == {"b-1"}


def test_a_model_that_fits_nothing_gives_an_empty_ladder():
    assert ladder(weight_bytes=1000 * GIB) == []


def test_heads_not_divisible_by_the_gpu_count_exclude_multi_gpu_machines():
    assert {m for _, m, _ in ladder(heads=7)} == {"s-1", "b-1"}
    real = candidates(SMALL_MODEL, 14, machine_catalog(), ["us-central1"], {})
    counts = {c.machine_spec.accelerator_count for c in real}
    assert 1 in counts and 2 in counts and not counts & {4, 8}  # 14 heads: not on 4 or 8 GPUs


def test_placement_regions_narrow_and_keep_the_operator_order():
    placement = {"regions": ["europe-west4", "us-central1", "asia-east1"]}
    assert [r for r, m, _ in ladder(placement=placement) if m == "s-1"] == list(REGIONS)
    only_eu = ladder(placement={"regions": ["europe-west4", "asia-east1"]})
    assert {r for r, _, _ in only_eu} == {"europe-west4"}
    assert ladder(placement={"regions": ["asia-east1"]}) == []  # not allowed by the operator


def test_accelerators_filter_and_max_price():
    assert {m for _, m, _ in ladder(placement={"accelerators": ["BIG"]})} == {"b-1"}
    assert {m for _, m, _ in ladder(placement={"max_hourly_usd": 2})} == {"s-1", "s-2"}
    assert ladder(placement={"max_hourly_usd": 0.5}) == []


def test_spot_prefer_puts_each_spot_variant_before_its_on_demand_one():
    # ordered by the on-demand price: b-1 comes last although on Spot it is cheaper than s-2
    assert ladder(regions=["us-central1"], placement={"spot": "prefer"}) == [
        ("us-central1", "s-1", True),
        ("us-central1", "s-1", False),
        ("us-central1", "s-2", True),
        ("us-central1", "s-2", False),
        ("us-central1", "b-1", True),
        ("us-central1", "b-1", False),
    ]
    assert ladder(placement={"spot": "prefer"})[:4] == [
        ("us-central1", "s-1", True),
        ("us-central1", "s-1", False),
        ("europe-west4", "s-1", True),
        ("europe-west4", "s-1", False),
    ]


def test_a_spot_variant_is_priced_at_the_spot_estimate():
    found = candidates(SMALL_MODEL, None, CATALOG, ["us-central1"], {"spot": "prefer"})
    prices = {(c.machine_spec.machine_type, c.spot): c.hourly_usd for c in found}
    assert prices == {
        ("s-1", True): Fraction("0.4"),  # the decimal written, exactly
        ("s-1", False): Fraction(1),
        ("s-2", True): Fraction("0.9"),
        ("s-2", False): Fraction(2),
        ("b-1", True): Fraction("0.5"),
        ("b-1", False): Fraction(3),
    }
    assert found[0].as_dict()["hourly_usd"] == 0.4 and found[0].as_dict()["spot"] is True


def test_max_price_caps_each_variant_at_its_own_price():
    # a spot variant under the cap stays when its on-demand twin is over it
    assert ladder(regions=["us-central1"], placement={"spot": "prefer", "max_hourly_usd": 2}) == [
        ("us-central1", "s-1", True),
        ("us-central1", "s-1", False),
        ("us-central1", "s-2", True),
        ("us-central1", "s-2", False),  # 2.0: the cap is inclusive
        ("us-central1", "b-1", True),  # 0.5 on Spot; 3.0 on demand is over the cap
    ]
    assert ladder(placement={"spot": "prefer", "max_hourly_usd": 0.5}) == [
        ("us-central1", "s-1", True),
        ("europe-west4", "s-1", True),
        ("us-central1", "b-1", True),
        ("europe-west4", "b-1", True),
    ]
    assert ladder(regions=["us-central1"], placement={"spot": "only", "max_hourly_usd": 0.45}) == [
        ("us-central1", "s-1", True)
    ]
    assert ladder(placement={"spot": "never", "max_hourly_usd": 0.5}) == []
    assert ladder(placement={"spot": "only", "max_hourly_usd": 0.3}) == []


def test_every_catalog_machine_has_a_spot_price_no_higher_than_on_demand():
    for machine in machine_catalog()["machines"]:
        spot, on_demand = machine["spot_usd_per_hour"], machine["usd_per_hour"]
        assert isinstance(spot, float) and 0 < spot <= on_demand, machine["machine_type"]
        assert round(spot, 4) == spot, machine["machine_type"]  # 4 decimals, like usd_per_hour
        assert "Spot" in machine["price_note"], machine["machine_type"]  # how it was derived
    real = candidates(SMALL_MODEL, None, machine_catalog(), ["us-central1"], {"spot": "prefer"})
    first, twin = real[:2]
    assert (first.machine_spec, first.spot, twin.machine_spec, twin.spot) == (
        MachineSpec("g2-standard-4", "NVIDIA_L4", 1),
        True,
        MachineSpec("g2-standard-4", "NVIDIA_L4", 1),
        False,
    )
    assert (first.hourly_usd, twin.hourly_usd) == (Fraction("0.3241"), Fraction("0.8129"))


@pytest.mark.parametrize(("mode", "spots"), [("only", {True}), ("never", {False})])
def test_spot_only_and_never(mode, spots):
    found = ladder(placement={"spot": mode})
    assert len(found) == 6 and {s for _, _, s in found} == spots


def test_the_older_top_level_spot_means_only_unless_placement_says():
    assert placement_of({}) == {}
    assert placement_of({"spot": True}) == {"spot": "only"}
    assert placement_of({"spot": True, "placement": {"spot": "prefer"}})["spot"] == "prefer"
    assert placement_of({"spot": False, "placement": {"regions": ["x-y1"]}}) == {
        "regions": ["x-y1"]
    }


def test_a_pinned_spec_is_the_only_type_still_tried_across_regions():
    pinned = MachineSpec("s-2", "SMALL", 2)
    assert ladder(pinned=pinned) == [("us-central1", "s-2", False), ("europe-west4", "s-2", False)]
    assert ladder(pinned=pinned, heads=7) == []  # it does not fit: nothing else is tried
    assert ladder(pinned=MachineSpec("n-1", "SMALL", 1)) == []


# -- modeldrop validate ----------------------------------------------------------------------


def test_validate_prints_the_ladder(tmp_path, capsys):
    root = write_valid(tmp_path / "ok")
    (root / "modeldrop.yaml").write_text(
        "placement: {accelerators: [NVIDIA_L4], max_hourly_usd: 1.0, spot: prefer}\n"
    )
    assert main(["validate", str(root), "--regions", "us-east4,europe-west4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ladder_lines = lines[lines.index(next(x for x in lines if "candidates" in x)) + 1 :]
    # g2-standard-4 and -8 in two regions, spot then on demand; then the L4 machines over
    # $1.0/h on demand but under it on Spot (g2-standard-12, -16, -32, -24), spot only
    assert len(ladder_lines) == 16
    assert "us-east4" in ladder_lines[0] and "g2-standard-4" in ladder_lines[0]
    assert "spot" in ladder_lines[0] and "on-demand" in ladder_lines[1]
    assert "~$0.32/h" in ladder_lines[0] and "~$0.81/h" in ladder_lines[1]
    assert "europe-west4" in ladder_lines[2] and "g2-standard-8" in ladder_lines[4]
    assert all("spot" in line for line in ladder_lines[8:])
    assert "g2-standard-12" in ladder_lines[8] and "g2-standard-24" in ladder_lines[15]

    assert main(["validate", str(root), "--json", "--regions", "us-east4"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert list(body)[-1] == "candidates" and body["recommended_machine"]
    assert body["candidates"][0] == {
        "region": "us-east4",
        "machine_spec": {
            "machine_type": "g2-standard-4",
            "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1,
        },
        "spot": True,
        "hourly_usd": 0.3241,  # g2-standard-4 on Spot
    }


def test_validate_regions_default_to_the_settings(tmp_path, capsys, monkeypatch):
    root = write_valid(tmp_path / "ok")
    monkeypatch.delenv("MODELDROP_REGIONS", raising=False)
    monkeypatch.setenv("MODELDROP_REGION", "asia-east1")
    assert main(["validate", str(root), "--json"]) == 0
    assert {c["region"] for c in json.loads(capsys.readouterr().out)["candidates"]} == {
        "asia-east1"
    }
    (root / "modeldrop.yaml").write_text("placement: {max_hourly_usd: 0.5}\n")
    assert main(["validate", str(root)]) == 0
    assert "candidates    none" in capsys.readouterr().out


def test_validate_refuses_bad_regions(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(tmp_path), "--regions", "US_CENTRAL"])
    assert exited.value.code == 2 and "--regions" in capsys.readouterr().err
