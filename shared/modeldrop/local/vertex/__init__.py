"""A local Vertex AI emulator that serves the model for real.

It answers the v1beta1 REST calls modeldrop makes on Google Cloud (ModelGardenService.Deploy of
custom weights, operations, endpoints, undeploy, delete) over http, and the dedicated-endpoint
queries (chat/completions, :predict, :streamRawPredict) over TLS, copying the model folder from
Cloud Storage (or fake-gcs-server) and serving it with `transformers serve` on CPU or vLLM on a
GPU. Modules:

- checks: DeployRequest / UpdateEndpoint validation, as the real API does it
- resources: the in-memory registry of operations, endpoints and models (REST JSON)
- storage: listing and copying the model folder from GCS
- engines, echo: the model servers (processes, process groups, logs) and the echo aid
- logs: every engine's output, answered as Cloud Logging's entries:list (POST /v2/entries:list)
- translate, proxy: query bodies to the engine and back (SSE passed through)
- faults: injected errors (MODELDROP_VERTEX_FAULTS, /emulator/faults)
- capacity: GPU quota and stock per region (--capacity, /emulator/capacity), :recommendSpec
- scaling: Scale To Zero (min_replica_count 0): idle engines stop, a request answers 429 and
  starts them again
- compute: Compute Engine's addresses, forwarding rules and region operations (the consumer
  side of Private Service Connect), under /compute/v1 on the control-plane port
- psc: the TLS listeners of accepted PSC endpoints ({address IP}:{--psc-port}), serving a
  private endpoint's queries, the only way to them
- control: deploy/undeploy/delete and scaling orchestration; server: the routes
- tls: the local CA and the server certificates (127.0.0.1; *.prediction.p.vertexai.goog for
  PSC endpoints); emulator: VertexEmulator (its ports and listeners), serve()

Usage: `modeldrop local vertex --port 8090` or `python -m modeldrop.local.vertex --port 8090`;
in tests `with VertexEmulator(engine="transformers") as emulator: emulator.url`; query
`https://{emulator.dedicated_dns}` with REQUESTS_CA_BUNDLE (or verify=) set to `emulator.ca_path`;
a private endpoint through its PSC endpoint at `https://{address IP}:{emulator.psc_port}`, checking
the certificate for ENDPOINT_ID-REGION-PROJECT_NUMBER.prediction.p.vertexai.goog (`psc.dns_name`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modeldrop.local.vertex.emulator import VertexEmulator, serve

__all__ = ["VertexEmulator", "serve"]


def __getattr__(name: str) -> Any:
    """Import the server (Flask, the SDK's protobuf types) only when it is used."""
    if name in __all__:
        from modeldrop.local.vertex import emulator

        return getattr(emulator, name)
    raise AttributeError(name)
