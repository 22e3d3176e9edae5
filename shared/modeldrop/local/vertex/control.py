"""The control plane: deploy (copy the folder, start an engine, wait), undeploy, delete, and
Scale To Zero (see `scaling`): idle models' engines stop, the next request starts them again.

Requests are checked and answered at once with a long-running operation; the slow work runs in
a background thread per deploy (and per scale-up), so one model that cannot load never holds up
another. A watcher thread checks the idle timers every `scale_check_s` seconds of real time;
the timers themselves read `clock`, which tests replace to move time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
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
from modeldrop.local.vertex.errors import RpcError, failed_precondition, invalid, not_found
from modeldrop.local.vertex.logs import EngineLog, LogBook
from modeldrop.local.vertex.resources import TYPE_PREFIX, DeployStart, Registry
from modeldrop.local.vertex.scaling import Phase, ScaledModel, not_ready
from modeldrop.local.vertex.storage import DEFAULT_CACHE, fetch, list_model_folder

log = logging.getLogger("modeldrop.vertex")

READY_TIMEOUT_S = 900.0  # a 7B model on CPU takes minutes to load
SCALE_CHECK_S = 1.0  # how often idle timers are checked (real time)
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
        clock: Callable[[], float] = time.monotonic,
        scale_check_s: float | None = SCALE_CHECK_S,
    ) -> None:
        """`clock`: seconds for the Scale To Zero timers; `scale_check_s` None: no watcher
        thread (call `scale_idle` yourself)."""
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
        self._scaled: dict[tuple[str, str], ScaledModel] = {}  # the Scale To Zero models
        self.clock = clock
        self.logs = LogBook()  # every engine's output, kept after it stops (entries:list)
        self._logs: dict[Engine, EngineLog] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._closing = threading.Event()
        if scale_check_s:
            threading.Thread(
                target=self._watch_idle, args=(scale_check_s,), name="scale-to-zero", daemon=True
            ).start()

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
            machine.accelerator_count * spec.starting_replicas,
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
        try:
            if not grant.in_stock:
                time.sleep(STOCK_DELAY_S)
                raise grant.stockout()
            local = fetch(folder, files, self.cache_dir)

            def register(engine: Engine, engine_log: EngineLog) -> None:
                deployed_id = self.registry.finish_deploy(start, spec)
                self.logs.deployed(engine_log, deployed_id)
                self._engines.setdefault(start.endpoint, {})[deployed_id] = engine
                self._grants[(start.endpoint, deployed_id)] = grant
                if spec.scale_to_zero is not None:
                    now = self.clock()
                    self._scaled[(start.endpoint, deployed_id)] = ScaledModel(
                        endpoint=start.endpoint,
                        deployed_id=deployed_id,
                        model_id=start.model_id,
                        folder=local,
                        deploy=spec,
                        spec=spec.scale_to_zero,
                        up_since=now,
                        last_traffic=now,
                    )

            engine = self._serve(start.endpoint, local, start.model_id, register)
            log.info("deploy %s: ready (%s, %s)", start.operation.name, engine.kind, engine.url)
            return
        except Exception as exc:  # recorded in the operation, as Vertex AI would
            error = engine_failure(exc, f"deploy {start.operation.name}")
        log.warning("deploy %s failed: %s", start.operation.name, error.message.splitlines()[0])
        self.capacity.release(grant)  # a failed deploy holds no GPUs
        self.registry.fail_deploy(start, error)

    def _serve(
        self,
        endpoint: str,
        folder: Path,
        model_id: str,
        register: Callable[[Engine, EngineLog], None],
    ) -> Engine:
        """Start an engine for `folder` and wait until it is ready, then `register` it (under
        the lock). On any failure the engine is stopped and the error raised."""
        engine = create_engine(self.engine_kind, folder, model_id, self.cache_dir / "logs")
        engine_log = self.logs.follow(endpoint, engine.log_path)
        try:
            with self._lock:
                self._logs[engine] = engine_log
                if self._closed:
                    raise _shutting_down()
                self._starting.add(engine)
            engine.start()
            engine.wait_ready(self.ready_timeout)
            with self._lock:
                self._starting.discard(engine)
                if self._closed:
                    raise _shutting_down()
                register(engine, engine_log)
            return engine
        except BaseException:
            self._stop_engine(engine)
            with self._lock:
                self._starting.discard(engine)
            raise

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
            self._scaled.pop((endpoint, deployed_id), None)
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
        """The engine behind `endpoint` and what predict answers name (deployedModelId, ...).

        A Scale To Zero model at zero (or on its way up) answers 429 (`scaling.not_ready`) and
        starts scaling up; a request admitted here ends with `finished`."""
        deployed_id, model, display_name, _ = self.registry.deployed(endpoint)
        with self._lock:
            engine = self._engines.get(endpoint, {}).get(deployed_id)
            scaled = self._scaled.get((endpoint, deployed_id))
            if scaled is not None and not scaled.admit(self.clock()):
                if scaled.phase is Phase.DOWN:
                    self._scale_up(scaled)
                raise not_ready()
        if engine is None:
            raise not_found(f"Deployed model {deployed_id} of {endpoint} has no engine.")
        return engine, {
            "deployedModelId": deployed_id,
            "model": model,
            "modelDisplayName": display_name,
            "modelVersionId": "1",
        }

    def finished(self, endpoint: str, deployed_id: str) -> None:
        """A request `serving` admitted has ended (its idle time starts now)."""
        with self._lock:
            scaled = self._scaled.get((endpoint, deployed_id))
            if scaled is not None:
                scaled.finished(self.clock())

    # Scale To Zero
    def scale_idle(self) -> None:
        """Scale idle Scale To Zero models down (their engines stop, their GPUs are freed), and
        undeploy those at zero for 30 days."""
        now = self.clock()
        with self._lock:
            idle = [s for s in self._scaled.values() if s.scale_down_due(now)]
            stopped = [self._scale_down(s, now) for s in idle]
            expired = [s for s in self._scaled.values() if s.undeploy_due(now)]
            for scaled in expired:
                del self._scaled[scaled.key]
                with contextlib.suppress(RpcError):  # undeployed meanwhile
                    self.registry.remove_deployed_model(*scaled.key)
        for scaled in expired:
            log.info("%s: undeployed after 30 days at zero replicas", scaled.endpoint)
        for engine in stopped:
            if engine is not None:
                self._stop_engine(engine)

    def _scale_down(self, scaled: ScaledModel, now: float) -> Engine | None:
        """Take a model to zero replicas (lock held); its engine, for the caller to stop."""
        scaled.scaled_down(now)
        engine = self._engines.get(scaled.endpoint, {}).pop(scaled.deployed_id, None)
        grant = self._grants.pop(scaled.key, None)
        if grant is not None:
            self.capacity.release(grant)
        self.registry.set_replicas(scaled.endpoint, scaled.deployed_id, 0)
        log.info("%s: scaled to zero after %g s idle", scaled.endpoint, now - scaled.last_traffic)
        return engine

    def _scale_up(self, scaled: ScaledModel) -> None:
        """Start scaling a model up from zero in the background (lock held)."""
        scaled.phase = Phase.STARTING
        threading.Thread(
            target=self._start_replicas,
            args=(scaled,),
            name=f"scale-up-{scaled.deployed_id}",
            daemon=True,
        ).start()

    def _start_replicas(self, scaled: ScaledModel) -> None:
        """Hold the GPUs of initial_replica_count replicas and start the engine; a stockout, the
        quota or an engine failure leaves the model at zero with the reason in its status."""
        try:
            grant = self._replica_grant(scaled)
        except RpcError as exc:
            self._scale_up_failed(scaled, exc)
            return

        def register(engine: Engine, engine_log: EngineLog) -> None:
            if self._scaled.get(scaled.key) is not scaled:
                raise failed_precondition(f"{scaled.endpoint} was undeployed while scaling up.")
            self.logs.deployed(engine_log, scaled.deployed_id)
            self._engines.setdefault(scaled.endpoint, {})[scaled.deployed_id] = engine
            self._grants[scaled.key] = grant
            scaled.scaled_up(self.clock())
            self.registry.set_replicas(scaled.endpoint, scaled.deployed_id, scaled.spec.replicas)

        try:
            self._serve(scaled.endpoint, scaled.folder, scaled.model_id, register)
            log.info("%s: scaled up from zero", scaled.endpoint)
            return
        except Exception as exc:
            error = engine_failure(exc, f"scale-up of {scaled.endpoint}")
        self.capacity.release(grant)
        self._scale_up_failed(scaled, error)

    def _scale_up_failed(self, scaled: ScaledModel, error: RpcError) -> None:
        with self._lock:
            scaled.scale_up_failed(self.clock())
        message = f"Scale-up from zero failed: {error.message.splitlines()[0]}"
        log.warning("%s: %s", scaled.endpoint, message)
        self.registry.set_replicas(scaled.endpoint, scaled.deployed_id, 0, message)

    def _replica_grant(self, scaled: ScaledModel) -> Grant:
        """The GPUs of the replicas a scale-up starts; RpcError beyond quota or stock."""
        deploy = scaled.deploy
        grant = self.capacity.acquire(
            deploy.location,
            deploy.machine.accelerator_type,
            deploy.machine.accelerator_count * scaled.spec.replicas,
            spot=deploy.spot,
        )
        if not grant.in_stock:
            raise grant.stockout()
        return grant

    def _watch_idle(self, every_s: float) -> None:
        while not self._closing.wait(every_s):
            try:
                self.scale_idle()
            except Exception:  # the watcher keeps watching
                log.exception("scale-to-zero check failed")

    # lifecycle
    def scaling(self) -> list[dict[str, Any]]:
        """The Scale To Zero models' phases (for /emulator/state)."""
        now = self.clock()
        with self._lock:
            return [
                {
                    "endpoint": s.endpoint,
                    "deployed_model_id": s.deployed_id,
                    "phase": s.phase.value,
                    "requests_in_flight": s.in_flight,
                    "idle_seconds": now - s.last_traffic,
                }
                for s in self._scaled.values()
            ]

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
        self._closing.set()
        with self._lock:
            self._closed = True
            engines = [e for group in self._engines.values() for e in group.values()]
            engines += list(self._starting)
            self._engines.clear()
            self._starting.clear()
            self._scaled.clear()
        threads = [threading.Thread(target=engine.stop, daemon=True) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.logs.shutdown()


def _shutting_down() -> RpcError:
    return RpcError("The emulator is shutting down.", http_status=503)


def engine_failure(exc: Exception, what: str) -> RpcError:
    """The RpcError an engine's start (deploy or scale-up) fails with, as Vertex AI reports it."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, EngineUnavailable):  # this machine's fault, not the model's
        return RpcError(f"The emulator cannot serve models here: {exc}", http_status=500)
    if isinstance(exc, EngineError):
        return RpcError(
            f"Model server failed to start: {exc}", code="INVALID_ARGUMENT", http_status=400
        )
    log.exception("%s failed", what)
    return RpcError(f"Deploy failed while preparing the model: {exc!r}", http_status=500)
