"""Scale To Zero: when a model deployed with min_replica_count 0 stops and starts its replicas.

As Google documents it ("Scale inference nodes by using autoscaling", section "Scale To Zero",
https://cloud.google.com/vertex-ai/docs/predictions/autoscaling#scale-to-zero, now
https://docs.cloud.google.com/gemini-enterprise-agent-platform/machine-learning/predictions/
autoscaling#scale-to-zero):

- the deployed model scales to zero replicas after idle_scaledown_period without traffic, and
  not before min_scaleup_period has passed since it last scaled up (deploy included);
- "When traffic reaches the target scaled-down endpoint, a 429 - Model is not yet ready for
  inference. Please wait while model completes scale-up from zero, then try your request again
  response is received, the request is dropped, and a scale-up signal is sent": the request is
  not held; it scales up to initial_replica_count (default 1), and requests sent meanwhile are
  dropped the same way ("any requests sent in this phase will be dropped");
- "DeployedModels which are scaled to zero for longer than 30 days (due to receiving no
  traffic) are automatically undeployed."

The 429's google.rpc status, RESOURCE_EXHAUSTED, is the one Google APIs pair with HTTP 429 (the
page gives the status code and message only). Times are seconds of the emulator's clock (an
injectable monotonic clock), so tests move time instead of waiting. A request in flight counts
as traffic until it ends: a replica never stops under a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from modeldrop.local.vertex.checks import DeploySpec, ScaleToZero
from modeldrop.local.vertex.errors import RpcError

NOT_READY = (
    "Model is not yet ready for inference. Please wait while model completes scale-up from "
    "zero, then try your request again."
)
UNDEPLOY_AFTER_S = 30 * 24 * 3600  # at zero this long, the deployed model is undeployed


def not_ready() -> RpcError:
    """What a request to a model scaled to zero (or scaling up) gets; the request is dropped."""
    return RpcError(
        NOT_READY,
        "Retry with backoff: the model is scaling up from zero replicas.",
        code="RESOURCE_EXHAUSTED",
        http_status=429,
    )


class Phase(StrEnum):
    UP = "up"  # serving
    DOWN = "down"  # scaled to zero
    STARTING = "starting"  # scaling up from zero


@dataclass
class ScaledModel:
    """A deployed model with Scale To Zero: what restarts it, and its replicas over time."""

    endpoint: str
    deployed_id: str
    model_id: str  # what its engine serves as
    folder: Path  # the local copy its engine serves
    deploy: DeploySpec  # its region, machine and Spot (the GPUs a scale-up holds)
    spec: ScaleToZero
    up_since: float  # when it last became ready
    last_traffic: float  # when its last request came in or ended
    phase: Phase = Phase.UP
    down_since: float = 0.0
    in_flight: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.endpoint, self.deployed_id

    def admit(self, now: float) -> bool:
        """Count a request in; False when it cannot be served (scaled to zero or scaling up)."""
        if self.phase is not Phase.UP:
            return False
        self.in_flight += 1
        self.last_traffic = now
        return True

    def finished(self, now: float) -> None:
        """A request admitted earlier has ended."""
        self.in_flight = max(0, self.in_flight - 1)
        self.last_traffic = now

    def scale_down_due(self, now: float) -> bool:
        return (
            self.phase is Phase.UP
            and self.in_flight == 0
            and now - self.up_since >= self.spec.min_scaleup
            and now - self.last_traffic >= self.spec.idle_scaledown
        )

    def undeploy_due(self, now: float) -> bool:
        return self.phase is Phase.DOWN and now - self.down_since >= UNDEPLOY_AFTER_S

    def scaled_down(self, now: float) -> None:
        self.phase, self.down_since = Phase.DOWN, now

    def scaled_up(self, now: float) -> None:
        self.phase, self.up_since, self.last_traffic = Phase.UP, now, now

    def scale_up_failed(self, now: float) -> None:
        """Back at zero; the request that asked for it was traffic, so the 30 days start again."""
        self.scaled_down(now)
