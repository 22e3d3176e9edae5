"""HTTP routes of the local Vertex AI emulator (Flask on werkzeug's threaded server).

Control plane (as the v1beta1 REST transport calls it): `:deploy`, operations under /ui and
/v1beta1, endpoints GET/PATCH/DELETE, `:undeployModel`, models GET/DELETE. Dedicated-endpoint
queries on the same server (endpoints report this server as their dedicatedEndpointDns):
`/chat/completions`, `:predict`, `:streamRawPredict`, `:rawPredict`. Admin: /emulator/state and
/emulator/faults.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from modeldrop.local.vertex import translate
from modeldrop.local.vertex.control import ControlPlane
from modeldrop.local.vertex.errors import ApiError, invalid
from modeldrop.local.vertex.faults import (
    ENV_VAR,
    FaultInjector,
    fault_error,
    make_fault,
    parse_faults,
)
from modeldrop.local.vertex.proxy import EngineClient, relay
from modeldrop.local.vertex.resources import Registry

log = logging.getLogger("modeldrop.vertex")

LOC = "projects/<project>/locations/<location>"
API = "<any(v1beta1, v1):version>"
OPS = "<any(ui, v1beta1, v1):api>"
EP = f"/{API}/{LOC}/endpoints/<endpoint>"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(control: ControlPlane, faults: FaultInjector, client: EngineClient) -> Flask:
    """The Flask app: every route, errors as google.rpc.Status JSON."""
    app = Flask("modeldrop.local.vertex")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    registry = control.registry

    calls: Counter[str] = Counter()  # requests per route kind, faulted ones included
    calls_lock = threading.Lock()

    def inject(route: str, resource: str, accelerator: str | None = None) -> None:
        """Count the call; answer with the next pending fault for `route`, if any."""
        with calls_lock:
            calls[route] += 1
        status = faults.take(route)
        if status is not None:
            log.info("fault: %s on %s %s", status, request.method, request.path)
            raise fault_error(status, route, resource, accelerator)

    # control plane
    @app.post(f"/v1beta1/{LOC}:deploy")
    def deploy(project: str, location: str) -> Any:
        body = _json_body()
        inject("deploy", f"projects/{project}/locations/{location}", _accelerator(body))
        return control.deploy(project, location, body)

    @app.get(f"/{OPS}/{LOC}/operations/<operation>")
    @app.get(f"/{OPS}/{LOC}/endpoints/<endpoint>/operations/<operation>")
    def get_operation(api: str, project: str, location: str, operation: str, **kw: str) -> Any:
        name = f"projects/{project}/locations/{location}"
        if "endpoint" in kw:
            name += f"/endpoints/{kw['endpoint']}"
        name += f"/operations/{operation}"
        inject("operations", name)
        return registry.operation(name)

    @app.get(f"/{API}/{LOC}/endpoints")
    def list_endpoints(version: str, project: str, location: str) -> Any:
        parent = f"projects/{project}/locations/{location}"
        inject("endpoints", parent)
        return {"endpoints": registry.endpoints(parent)}

    @app.get(EP)
    def get_endpoint(version: str, project: str, location: str, endpoint: str) -> Any:
        name = _endpoint_name(project, location, endpoint)
        inject("endpoints", name)
        return registry.endpoint(name)

    @app.patch(EP)
    def update_endpoint(version: str, project: str, location: str, endpoint: str) -> Any:
        name = _endpoint_name(project, location, endpoint)
        inject("endpoints", name)
        mask = request.args.get("updateMask", request.args.get("update_mask", ""))
        return control.update_endpoint(name, _json_body(), mask)

    @app.delete(EP)
    def delete_endpoint(version: str, project: str, location: str, endpoint: str) -> Any:
        name = _endpoint_name(project, location, endpoint)
        inject("delete", name)
        return control.delete_endpoint(name)

    @app.post(f"{EP}:undeployModel")
    def undeploy(version: str, project: str, location: str, endpoint: str) -> Any:
        name = _endpoint_name(project, location, endpoint)
        inject("undeploy", name)
        return control.undeploy(name, _json_body())

    @app.get(f"/{API}/{LOC}/models/<model>")
    def get_model(version: str, project: str, location: str, model: str) -> Any:
        name = f"projects/{project}/locations/{location}/models/{model}"
        inject("endpoints", name)
        return registry.model(name)

    @app.delete(f"/{API}/{LOC}/models/<model>")
    def delete_model(version: str, project: str, location: str, model: str) -> Any:
        name = f"projects/{project}/locations/{location}/models/{model}"
        inject("delete", name)
        registry.delete_model(name)
        operation = registry.new_operation(
            f"projects/{project}/locations/{location}", "DeleteOperationMetadata", {}
        )
        registry.finish(
            operation.name, response={"@type": "type.googleapis.com/google.protobuf.Empty"}
        )
        return registry.operation(operation.name)

    # dedicated-endpoint queries
    def serving(project: str, location: str, endpoint: str) -> tuple[Any, dict[str, str]]:
        name = _endpoint_name(project, location, endpoint)
        inject("query", name)
        return control.serving(name)

    @app.post(f"{EP}/chat/completions")
    def chat(version: str, project: str, location: str, endpoint: str) -> Any:
        engine, _ = serving(project, location, endpoint)
        body = _json_body()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise invalid('chat/completions needs a JSON body with "messages": [...].')
        return _forward(client, engine, "/v1/chat/completions", body, body.get("stream") is True)

    @app.post(f"{EP}:predict")
    def predict(version: str, project: str, location: str, endpoint: str) -> Any:
        engine, meta = serving(project, location, endpoint)
        predictions = []
        for index, instance in enumerate(translate.instances(_json_body(), ":predict")):
            body = translate.completion_body(instance, stream=False)
            with client.post(engine, "/v1/completions", body) as response:
                if response.status_code != 200:
                    raise ApiError(
                        400 if response.status_code < 500 else 500,
                        f"The model server answered {response.status_code} to instances[{index}]: "
                        f"{response.text[:1000]}",
                    )
                predictions.append(translate.prediction(instance, response.json()))
        return {"predictions": predictions, **meta}

    @app.post(f"{EP}:streamRawPredict")
    @app.post(f"{EP}:rawPredict")
    def raw_predict(version: str, project: str, location: str, endpoint: str) -> Any:
        engine, _ = serving(project, location, endpoint)
        body = _json_body()
        method = request.path.rsplit(":", 1)[-1]
        if isinstance(body, dict) and "instances" in body:
            items = translate.instances(body, method)
            if len(items) != 1:
                raise invalid(f"{method} takes one instance; got {len(items)}. Use :predict.")
            stream = items[0].get("stream") is True
            body = translate.completion_body(items[0], stream)
            return _forward(client, engine, "/v1/completions", body, stream)
        if isinstance(body, dict) and isinstance(body.get("messages"), list):
            return _forward(
                client, engine, "/v1/chat/completions", body, body.get("stream") is True
            )
        if isinstance(body, dict) and "prompt" in body:
            return _forward(client, engine, "/v1/completions", body, body.get("stream") is True)
        raise invalid(
            f'{method} needs {{"instances": [{{"prompt": ..., "stream": true}}]}} or an '
            "OpenAI chat/completions body."
        )

    # admin
    @app.get("/")
    def health() -> Any:
        return {"status": "ok"}

    @app.get("/emulator/state")
    def state() -> Any:
        with calls_lock:
            counts = dict(calls)
        return {  # resources in REST camelCase; the emulator's own fields in snake_case
            **registry.snapshot(),
            "engines": control.engines(),
            "engine_kind": control.engine_kind,
            "calls": counts,
            "deploy_calls": counts.get("deploy", 0),
            "faults": faults.pending(),
            "faults_fired": faults.fired,
        }

    @app.get("/emulator/faults")
    def list_faults() -> Any:
        return {"faults": faults.pending(), "fired": faults.fired}

    @app.post("/emulator/faults")
    def add_faults() -> Any:
        body = _json_body()
        items = body.get("faults", [body]) if isinstance(body, dict) else body
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise invalid(
                'POST /emulator/faults takes {"status": 503, "count": 2, "routes": [...]}.'
            )
        try:
            new = [
                make_fault(i.get("status"), i.get("count", 1), i.get("routes", ())) for i in items
            ]
        except ValueError as exc:
            raise invalid(str(exc)) from exc
        faults.add(new)
        return {"faults": faults.pending()}

    @app.delete("/emulator/faults")
    def clear_faults() -> Any:
        faults.clear()
        return {"faults": []}

    # errors
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        return exc.to_json(), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        message = f"{exc.name}: {request.method} {request.path} is not a route of the emulator."
        return ApiError(
            code, message if code in (404, 405) else str(exc.description)
        ).to_json(), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return ApiError(500, f"Internal error in the emulator: {exc!r}").to_json(), 500

    return app


def _endpoint_name(project: str, location: str, endpoint: str) -> str:
    return f"projects/{project}/locations/{location}/endpoints/{endpoint}"


def _json_body() -> Any:
    data = request.get_data()
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except ValueError as exc:
        raise invalid(f"Invalid JSON payload received. {exc}.") from exc


def _accelerator(body: Any) -> str | None:
    """The accelerator a deploy body asks for (names the quota in an injected 429)."""
    try:
        spec = body.get("deployConfig", body.get("deploy_config"))
        spec = spec.get("dedicatedResources", spec.get("dedicated_resources"))
        spec = spec.get("machineSpec", spec.get("machine_spec"))
        value = spec.get("acceleratorType", spec.get("accelerator_type"))
    except AttributeError:
        return None
    if isinstance(value, int):
        from modeldrop.local.vertex.checks import accelerator_names

        return accelerator_names().get(value)
    return value if isinstance(value, str) else None


def _forward(client: EngineClient, engine: Any, path: str, body: dict, stream: bool) -> Response:
    """The engine's answer as is: SSE relayed chunk by chunk, or its status and body."""
    response = client.post(engine, path, body, stream=stream)
    if stream and response.status_code == 200:
        return Response(
            relay(response),
            mimetype="text/event-stream",
            headers=SSE_HEADERS,
            direct_passthrough=True,
        )
    with response:
        content_type = response.headers.get("Content-Type", "application/json")
        return Response(response.content, status=response.status_code, content_type=content_type)


class _Handler(WSGIRequestHandler):
    """werkzeug's handler, sending each response chunk in one TCP segment without delay.

    werkzeug writes a chunk's size, data and CRLF separately and flushes after each chunk; with
    a buffered socket file (wbufsize -1) the flush sends them together, and TCP_NODELAY keeps
    Nagle's algorithm from holding a small SSE event back until the previous one is acked.
    """

    wbufsize = -1

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _QuietHandler(_Handler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class VertexEmulator:
    """The emulator on a port: `start()` serves in a background thread, `stop()` ends it and
    every engine. `url` is the api_endpoint for the SDK and the base of every route."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        engine: str = "auto",
        cache_dir: Path | str | None = None,
        faults: str | None = None,
        ready_timeout: float | None = None,
        quiet: bool = True,
    ) -> None:
        spec = faults if faults is not None else _env_faults()
        self.faults = FaultInjector(parse_faults(spec))
        self.registry = Registry(dns="")
        options = {"ready_timeout": ready_timeout} if ready_timeout else {}
        self.control = ControlPlane(
            self.registry, engine, Path(cache_dir) if cache_dir else None, **options
        )
        self.client = EngineClient()
        self.app = create_app(self.control, self.faults, self.client)
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            self.app,
            threaded=True,
            request_handler=_QuietHandler if quiet else _Handler,
        )
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.port = self._server.server_port
        self.host = f"{shown}:{self.port}"
        self.url = f"http://{self.host}"
        self.registry.dns = self.host  # clients follow it to the query routes on this server
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._stop_lock = threading.Lock()

    def start(self) -> VertexEmulator:
        """Serve in a daemon thread; returns at once (the socket is already listening)."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vertex-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and stop every engine (TERM then KILL); idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
        self.control.shutdown()
        self.client.close()

    def state(self) -> dict[str, Any]:
        with self.app.test_client() as client:
            return client.get("/emulator/state").get_json()

    def __enter__(self) -> VertexEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _env_faults() -> str:
    import os

    return os.environ.get(ENV_VAR, "")


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    engine: str = "auto",
    cache_dir: Path | str | None = None,
) -> None:
    """Run the emulator in the foreground until SIGINT or SIGTERM; engines stop with it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    emulator = VertexEmulator(host, port, engine, cache_dir, quiet=False)
    atexit.register(emulator.stop)

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous: dict[int, Callable[..., Any] | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    print(
        f"modeldrop Vertex AI emulator on {emulator.url} (engine {emulator.control.engine_kind}, "
        f"cache {emulator.control.cache_dir})",
        file=sys.stderr,
        flush=True,
    )
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
