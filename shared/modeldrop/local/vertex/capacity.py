"""GPU capacity per region and accelerator type: quota refusals, stockouts and RecommendSpec.

The table is `{"REGION": {"ACCELERATOR_TYPE": {"quota": N, "stock": N, "spot_stock": N}}}` in
GPUs; a missing region, accelerator or field is unlimited, except `spot_stock`, which defaults to
`stock`. GPUs held by deployed (or deploying) models, Spot or not, count against every number.
A deploy beyond `quota` is refused at once (429, as Vertex AI does). An on-demand deploy beyond
`stock` is accepted and its operation fails with Vertex AI's stockout error; a Spot deploy
(dedicated_resources.spot) is measured against `spot_stock` instead of `stock`, and beyond it
its operation fails with a Spot STOCKOUT error. Spot deploys count against the same quota: the
reference names no preemptible serving quota metric. RecommendSpec has no Spot field, so it
answers for on-demand deploys.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldrop.catalog import machine_catalog
from modeldrop.local.vertex.checks import accelerator_names
from modeldrop.local.vertex.errors import RpcError, invalid
from modeldrop.local.vertex.faults import serving_quota_error

STOCK_DELAY_S = 0.2  # how long a deploy that will stock out looks like it is starting
FIELDS = ("quota", "stock", "spot_stock")
Table = dict[str, dict[str, dict[str, int]]]


def parse_capacity(table: Any) -> Table:
    """A checked capacity table; ValueError says what is wrong and what is expected."""
    shape = '{"REGION": {"ACCELERATOR_TYPE": {"quota": N, "stock": N, "spot_stock": N}}}'
    if not isinstance(table, dict):
        raise ValueError(f"the capacity table must be an object {shape}")
    known = set(accelerator_names().values())
    checked: Table = {}
    for region, accelerators in table.items():
        if not isinstance(accelerators, dict):
            raise ValueError(f"capacity[{region!r}] must be an object of accelerator types")
        checked[region] = {}
        for accelerator, limits in accelerators.items():
            where = f"capacity[{region!r}][{accelerator!r}]"
            if accelerator not in known:
                raise ValueError(f"{where}: unknown accelerator type (e.g. NVIDIA_L4)")
            if not isinstance(limits, dict) or set(limits) - set(FIELDS):
                raise ValueError(
                    f'{where} must be an object with "quota", "stock" and/or "spot_stock"'
                )
            for name, value in limits.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{where}[{name!r}] must be a whole number >= 0 (GPUs)")
            checked[region][accelerator] = dict(limits)
    return checked


def load_capacity(path: str | Path) -> Table:
    """The table in a JSON file; ValueError on bad JSON or a bad table."""
    try:
        return parse_capacity(json.loads(Path(path).read_text()))
    except json.JSONDecodeError as exc:
        raise ValueError(f"capacity file {path}: invalid JSON: {exc}") from exc


@dataclass(frozen=True)
class Grant:
    """GPUs held by one deploy; `in_stock` False: nothing held, the deploy will stock out (with
    the Spot error when `spot_stockout`: a Spot deploy beyond the table's spot_stock)."""

    region: str
    accelerator: str
    gpus: int
    in_stock: bool
    spot_stockout: bool = False

    def stockout(self) -> RpcError:
        """The error the operation of a deploy not in stock fails with."""
        if self.spot_stockout:
            return spot_stockout_error(self.region, self.accelerator)
        return stockout_error(self.region)


def stockout_error(region: str) -> RpcError:
    """Vertex AI's stockout, as the deploy operation's error.

    Text from openreview/openreview-expertise issue 401 (Vertex AI; every zone of the region was
    tried). The reference gives no code for it; RESOURCE_EXHAUSTED is the emulator's choice.
    """
    return RpcError(
        f"Resources are insufficient in region: {region}.",
        code="RESOURCE_EXHAUSTED",
        http_status=429,
    )


def spot_stockout_error(region: str, accelerator: str) -> RpcError:
    """A Spot deploy's stockout, as the deploy operation's error.

    https://cloud.google.com/vertex-ai/docs/predictions/use-spot-vms ("Preemption handling"):
    "When Spot VMs are preempted, the prediction job fails with a STOCKOUT error". The docs give
    only the word STOCKOUT; the rest of the wording and RESOURCE_EXHAUSTED (as stockout_error)
    are the emulator's choice.
    """
    return RpcError(
        f"STOCKOUT: the Spot VMs for {accelerator} were preempted before the model was ready "
        f"in region: {region}.",
        code="RESOURCE_EXHAUSTED",
        http_status=429,
    )


class Capacity:
    """The table and the GPUs in use per (region, accelerator); thread-safe."""

    def __init__(self, table: Table | None = None) -> None:
        self._table: Table = table or {}
        self._used: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def replace(self, table: Table) -> None:
        """A new table; GPUs in use stay in use."""
        with self._lock:
            self._table = table

    def table(self) -> Table:
        with self._lock:
            return json.loads(json.dumps(self._table))

    def in_use(self) -> dict[str, dict[str, int]]:
        """GPUs held, `{"REGION": {"ACCELERATOR_TYPE": N}}` (for /emulator/state)."""
        with self._lock:
            used: dict[str, dict[str, int]] = {}
            for (region, accelerator), gpus in sorted(self._used.items()):
                if gpus:
                    used.setdefault(region, {})[accelerator] = gpus
            return used

    def acquire(
        self, region: str, accelerator: str, gpus: int, spot: bool = False, stockout: bool = False
    ) -> Grant:
        """Hold `gpus` for a deploy; 429 beyond quota; a Grant not in stock beyond stock (for a
        `spot` deploy: beyond spot_stock). `stockout`: an injected stockout, a Grant not in stock
        whatever the table says (the quota is still checked first)."""
        with self._lock:
            used = self._used.get((region, accelerator), 0)
            if not self._fits(region, accelerator, "quota", used + gpus):
                quota = self._limit(region, accelerator, "quota")
                raise serving_quota_error(
                    accelerator,
                    f"the deploy needs {gpus} x {accelerator} in {region}, where {used} of the "
                    f"quota of {quota} are in use. Request a quota increase, free GPUs or "
                    "deploy in another region.",
                )
            if stockout:
                return Grant(region, accelerator, gpus, in_stock=False)
            if not self._in_stock(region, accelerator, used + gpus, spot):
                return Grant(region, accelerator, gpus, in_stock=False, spot_stockout=spot)
            self._used[(region, accelerator)] = used + gpus
            return Grant(region, accelerator, gpus, in_stock=True)

    def release(self, grant: Grant) -> None:
        """Give a grant's GPUs back (nothing for one that was not in stock)."""
        if not grant.in_stock:
            return
        with self._lock:
            key = (grant.region, grant.accelerator)
            self._used[key] = max(0, self._used.get(key, 0) - grant.gpus)

    def check(
        self, region: str, accelerator: str, gpus: int, spot: bool = False
    ) -> tuple[bool, bool]:
        """(within quota, in stock) for `gpus` more, without holding them; `spot`: in stock
        means within spot_stock."""
        with self._lock:
            used = self._used.get((region, accelerator), 0) + gpus
            return (
                self._fits(region, accelerator, "quota", used),
                self._in_stock(region, accelerator, used, spot),
            )

    def regions(self) -> list[str]:
        with self._lock:
            return list(self._table)

    def _limit(self, region: str, accelerator: str, name: str) -> int | None:
        return self._table.get(region, {}).get(accelerator, {}).get(name)

    def _fits(self, region: str, accelerator: str, name: str, gpus: int) -> bool:
        limit = self._limit(region, accelerator, name)
        return limit is None or gpus <= limit

    def _in_stock(self, region: str, accelerator: str, gpus: int, spot: bool) -> bool:
        """Whether `gpus` in use fit the stock: spot_stock for Spot (missing: stock)."""
        if spot and self._limit(region, accelerator, "spot_stock") is not None:
            return self._fits(region, accelerator, "spot_stock", gpus)
        return self._fits(region, accelerator, "stock", gpus)


def recommend_spec(
    capacity: Capacity, location: str, body: Any, enum_numbers: bool
) -> dict[str, Any]:
    """A RecommendSpecResponse (REST JSON) from the table and the machine catalog.

    Fields from the SDK's types (google-cloud-aiplatform 2.7,
    aiplatform_v1beta1/types/model_service.py: RecommendSpecRequest, RecommendSpecResponse,
    Recommendation.QuotaState). One recommendation per catalog machine and region: the request's
    region first, then the table's. `check_machine_availability` drops machines out of stock;
    `check_user_quota` sets user_quota_state (else QUOTA_STATE_UNSPECIFIED). The emulator does
    not size the model, so every catalog machine is offered, and base_model stays empty;
    container_spec is left out (no serving images here).
    """
    from google.cloud.aiplatform_v1beta1.types import model_service
    from google.protobuf import json_format

    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected a RecommendSpecRequest object.")
    request = model_service.RecommendSpecRequest.pb()()
    try:
        json_format.ParseDict(body, request)
    except json_format.ParseError as exc:
        raise invalid(f"Invalid JSON payload received. {str(exc).splitlines()[0]}") from exc
    if not request.gcs_uri.startswith("gs://"):
        raise invalid("gcs_uri is required: the gs:// folder of the custom model.")
    state = model_service.RecommendSpecResponse.Recommendation.QuotaState
    response = model_service.RecommendSpecResponse()
    regions = [location, *(r for r in capacity.regions() if r != location)]
    for region in regions:
        for machine in machine_catalog()["machines"]:
            accelerator, count = machine["accelerator_type"], machine["accelerator_count"]
            has_quota, in_stock = capacity.check(region, accelerator, count)
            if request.check_machine_availability and not in_stock:
                continue
            quota_state = state.QUOTA_STATE_UNSPECIFIED
            if request.check_user_quota and has_quota:
                quota_state = state.QUOTA_STATE_USER_HAS_QUOTA
            elif request.check_user_quota:
                quota_state = state.QUOTA_STATE_NO_USER_QUOTA
            response.recommendations.append(
                model_service.RecommendSpecResponse.Recommendation(
                    region=region,
                    spec={
                        "machine_spec": {
                            "machine_type": machine["machine_type"],
                            "accelerator_type": accelerator,
                            "accelerator_count": count,
                        }
                    },
                    user_quota_state=quota_state,
                )
            )
    return json_format.MessageToDict(
        model_service.RecommendSpecResponse.pb(response), use_integers_for_enums=enum_numbers
    )
