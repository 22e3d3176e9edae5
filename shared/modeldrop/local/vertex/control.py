"""The control plane: deploy (copy the folder, start an engine, wait), undeploy, delete.

Requests are checked and answered at once with a long-running operation; the slow work runs in
a background thread per deploy, so one model that cannot load never holds up another.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from modeldrop.adapters.gcs_folder import GcsFolder
from modeldrop.domain.folder import FileInfo
from modeldrop.local.vertex.capacity import STOCK_DELAY_S, Capacity, Grant
from modeldrop.local.vertex.checks import DeploySpec, check_deploy_request, check_endpoint_update
from modeldrop.local.vertex.engines import (
    Engine,
    EngineError,
    EngineUnavailable,
    create_engine,
    resolve_kind,
)
from modeldrop.local.vertex.errors import RpcError, invalid, not_found
from modeldrop.local.vertex.logs import EngineLog, LogBook
from modeldrop.local.vertex.resources import TYPE_PREFIX, DeployStart, Registry
from modeldrop.local.vertex.storage import DEFAULT_CACHE, fetch, list_model_folder

log = logging.getLogger("modeldrop.vertex")

READY_TIMEOUT_S = 900.0  # a 7B model on CPU takes minutes to load
EMPTY = "type.googleapis.com/google.protobuf.Empty"


class ControlPlane:
    """Deploys, engines and the registry behind the REST routes; thread-safe."""

    def __init__(
        self,
        registry: Registry,
        engine: str = "auto",
        cache_dir: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        capacity: Capacity | None = None,
    ) -> None:
        self.registry = registry
        self.capacity = capacity or Capacity()
        self.engine_kind = engine
        try:
            self.engine_kind = resolve_kind(engine)
        except EngineUnavailable:
            if engine != "auto":
                raise
            log.warning("no engine can serve models here; deploys will fail until one is installed")
        self.cache_dir = Path(cache_dir or DEFAULT_CACHE)
        self.ready_timeout = ready_timeout
        self._engines: dict[str, dict[str, Engine]] = {}  # endpoint -> deployed model id -> engine
        self._starting: set[Engine] = set()
        self._grants: dict[tuple[str, str], Grant] = {}  # (endpoint, deployed model id) -> GPUs
        self.logs = LogBook()  # every engine's output, kept after it stops (entries:list)
        self._logs: dict[Engine, EngineLog] = {}
        self._lock = threading.Lock()
        self._closed = False

    # deploy
    def deploy(
        self, project: str, location: str, body: Any, stockout: bool = False
    ) -> dict[str, Any]:
        """Check and start a deploy; its operation comes back at once. `stockout`: an injected
        stockout, the operation fails with the stockout error however much stock is left."""
        spec = check_deploy_request(body, project, location)
        if spec.ignored:
            log.info("deploy: %s accepted but not emulated", ", ".join(spec.ignored))
        folder, files = list_model_folder(spec.gcs_uri)
        machine = spec.machine
        # the replicas that start hold GPUs (the emulator runs one engine whatever the count)
        grant = self.capacity.acquire(
            spec.location,
            machine.accelerator_type,
            machine.accelerator_count * spec.min_replicas,
            spot=spec.spot,
            stockout=stockout,
        )
        try:
            start = self.registry.start_deploy(spec)
        except RpcError:
            self.capacity.release(grant)
            raise
        log.info("deploy %s: %s -> %s", start.operation.name, spec.gcs_uri, start.endpoint)
        threading.Thread(
            target=self._deploy,
            args=(start, spec, folder, files, grant),
            name=f"deploy-{start.model_id}",
            daemon=True,
        ).start()
        return self.registry.operation(start.operation.name)

    def _deploy(
        self,
        start: DeployStart,
        spec: DeploySpec,
        folder: GcsFolder,
        files: list[FileInfo],
        grant: Grant,
    ) -> None:
        engine: Engine | None = None
        try:
            if not grant.in_stock:
                time.sleep(STOCK_DELAY_S)
                raise grant.stockout()
            local = fetch(folder, files, self.cache_dir)
            engine = create_engine(self.engine_kind, local, start.model_id, self.cache_dir / "logs")
            engine_log = self.logs.follow(start.endpoint, engine.log_path)
            with self._lock:
                self._logs[engine] = engine_log
                if self._closed:
                    raise RpcError("The emulator is shutting down.", http_status=503)
                self._starting.add(engine)
            engine.start()
            engine.wait_ready(self.ready_timeout)
            with self._lock:
                self._starting.discard(engine)
                if self._closed:
                    raise RpcError("The emulator is shutting down.", http_status=503)
                deployed_id = self.registry.finish_deploy(start, spec)
                self.logs.deployed(engine_log, deployed_id)
                self._engines.setdefault(start.endpoint, {})[deployed_id] = engine
                self._grants[(start.endpoint, deployed_id)] = grant
            log.info("deploy %s: ready (%s, %s)", start.operation.name, engine.kind, engine.url)
            return
        except EngineUnavailable as exc:  # this machine's fault, not the model's
            error = RpcError(f"The emulator cannot serve models here: {exc}", http_status=500)
        except EngineError as exc:
            error = RpcError(
                f"Model server failed to start: {exc}", code="INVALID_ARGUMENT", http_status=400
            )
        except RpcError as exc:
            error = exc
        except Exception as exc:  # recorded in the operation, as Vertex AI would
            log.exception("deploy %s failed", start.operation.name)
            error = RpcError(f"Deploy failed while preparing the model: {exc!r}", http_status=500)
        log.warning("deploy %s failed: %s", start.operation.name, error.message.splitlines()[0])
        if engine is not None:
            self._stop_engine(engine)
            with self._lock:
                self._starting.discard(engine)
        self.capacity.release(grant)  # a failed deploy holds no GPUs
        self.registry.fail_deploy(start, error)

    # undeploy and delete
    def undeploy(self, endpoint: str, body: Any) -> dict[str, Any]:
        deployed_id = body.get("deployedModelId") if isinstance(body, dict) else None
        if deployed_id is None and isinstance(body, dict):
            deployed_id = body.get("deployed_model_id")
        if not isinstance(deployed_id, str) or not deployed_id:
            raise invalid("deployed_model_id is required: the id of a model on this endpoint.")
        with self._lock:
            self.registry.remove_deployed_model(endpoint, deployed_id)
            engine = self._engines.get(endpoint, {}).pop(deployed_id, None)
            grant = self._grants.pop((endpoint, deployed_id), None)
        if grant is not None:
            self.capacity.release(grant)
        operation = self.registry.new_operation(endpoint, "UndeployModelOperationMetadata", {})

        def stop() -> None:
            if engine is not None:
                self._stop_engine(engine)
            self.registry.finish(
                operation.name, response={"@type": TYPE_PREFIX + "UndeployModelResponse"}
            )

        threading.Thread(target=stop, name=f"undeploy-{deployed_id}", daemon=True).start()
        return self.registry.operation(operation.name)

    def delete_endpoint(self, endpoint: str) -> dict[str, Any]:
        self.registry.delete_endpoint(endpoint)
        with self._lock:
            self._engines.pop(endpoint, None)
        return self._deleted(endpoint.split("/endpoints/")[0])

    def delete_model(self, model: str) -> dict[str, Any]:
        self.registry.delete_model(model)
        return self._deleted(model.split("/models/")[0])

    def _deleted(self, parent: str) -> dict[str, Any]:
        """A delete's operation, done at once: nothing is left to wait for."""
        operation = self.registry.new_operation(parent, "DeleteOperationMetadata", {})
        self.registry.finish(operation.name, response={"@type": EMPTY})
        return self.registry.operation(operation.name)

    def update_endpoint(self, endpoint: str, body: Any, update_mask: str) -> dict[str, Any]:
        self.registry.endpoint(endpoint)  # 404 before 400, as the real API
        return self.registry.update_endpoint(endpoint, check_endpoint_update(body, update_mask))

    def _stop_engine(self, engine: Engine) -> None:
        """Stop an engine; its log is read to the end and kept."""
        engine.stop()
        with self._lock:
            engine_log = self._logs.pop(engine, None)
        if engine_log is not None:
            self.logs.close(engine_log)

    # queries
    def serving(self, endpoint: str) -> tuple[Engine, dict[str, str]]:
        """The engine behind `endpoint` and what predict answers name (deployedModelId, ...)."""
        deployed_id, model, display_name, _ = self.registry.deployed(endpoint)
        with self._lock:
            engine = self._engines.get(endpoint, {}).get(deployed_id)
        if engine is None:
            raise not_found(f"Deployed model {deployed_id} of {endpoint} has no engine.")
        return engine, {
            "deployedModelId": deployed_id,
            "model": model,
            "modelDisplayName": display_name,
            "modelVersionId": "1",
        }

    # lifecycle
    def engines(self) -> list[dict[str, Any]]:
        with self._lock:
            running = [
                {"endpoint": endpoint, "deployed_model_id": deployed_id, **engine.info()}
                for endpoint, engines in self._engines.items()
                for deployed_id, engine in engines.items()
            ]
            starting = [{"endpoint": None, "starting": True, **e.info()} for e in self._starting]
        return running + starting

    def shutdown(self) -> None:
        """Stop every engine (in parallel), including those still starting; idempotent."""
        with self._lock:
            self._closed = True
            engines = [e for group in self._engines.values() for e in group.values()]
            engines += list(self._starting)
            self._engines.clear()
            self._starting.clear()
        threads = [threading.Thread(target=engine.stop, daemon=True) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.logs.shutdown()
