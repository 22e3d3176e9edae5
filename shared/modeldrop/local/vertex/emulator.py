"""The emulator on its ports: the control plane over http, dedicated endpoints over TLS, and
Private Service Connect endpoints over TLS on their own IPs.

The SDK takes an http `api_endpoint` for the control plane, but queries a dedicated endpoint at
`https://{dedicatedEndpointDns}/v1/...` whatever the endpoint (google-cloud-aiplatform 2.7:
`Endpoint.predict(..., use_dedicated_endpoint=True)`, `raw_predict`, `stream_raw_predict`). So
endpoints report the TLS port as their dedicatedEndpointDns, and clients verify it with the CA
the emulator writes (see `tls`). Both ports serve the same app. A forwarding rule created through
the Compute Engine routes (`compute`) to a private endpoint's service attachment listens on
`{its address's IP}:{psc_port}` (`psc`), with a certificate for *.prediction.p.vertexai.goog from
the same CA.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from modeldrop.local.vertex.capacity import Capacity, Table
from modeldrop.local.vertex.compute import DELAY_S, Compute
from modeldrop.local.vertex.control import READY_TIMEOUT_S, ControlPlane
from modeldrop.local.vertex.faults import ENV_VAR, FaultInjector, parse_faults
from modeldrop.local.vertex.proxy import EngineClient
from modeldrop.local.vertex.psc import PscListeners, free_port, tls_server
from modeldrop.local.vertex.resources import Registry
from modeldrop.local.vertex.server import create_app
from modeldrop.local.vertex.tls import DEFAULT_DIR, PSC_NAMES, server_context


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


def _tls_server(
    host: str, port: int, app: Flask, handler: type[WSGIRequestHandler], context: ssl.SSLContext
) -> BaseWSGIServer:
    return tls_server(host, port, app, handler, context)


class VertexEmulator:
    """The emulator: `url` (http) is the api_endpoint for the SDK (and Compute Engine's, for
    PSC endpoints); `dedicated_dns` is what endpoints report, served over TLS with a certificate
    the CA at `ca_path` signed; PSC endpoints listen on `psc_port` of their addresses' IPs.
    `start()` serves in background threads, `stop()` ends them, every listener and every
    engine. `clock` (seconds, monotonic) times Scale To Zero; tests pass one they move forward.
    `compute_delay`: seconds a Compute Engine operation takes to be DONE."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        engine: str = "auto",
        cache_dir: Path | str | None = None,
        faults: str | None = None,
        ready_timeout: float | None = None,
        quiet: bool = True,
        tls_port: int = 0,
        ca_dir: Path | str = DEFAULT_DIR,
        capacity: Table | None = None,
        clock: Callable[[], float] = time.monotonic,
        psc_port: int = 0,
        compute_delay: float = DELAY_S,
    ) -> None:
        spec = faults if faults is not None else os.environ.get(ENV_VAR, "")
        self.faults = FaultInjector(parse_faults(spec))
        self.registry = Registry(dns="")
        self.control = ControlPlane(
            self.registry,
            engine,
            Path(cache_dir) if cache_dir else None,
            ready_timeout=ready_timeout or READY_TIMEOUT_S,
            capacity=Capacity(capacity),
            clock=clock,
        )
        self.client = EngineClient()
        self.compute = Compute(self.registry.attachment, delay=compute_delay)
        self.registry.attachment_closed = self.compute.attachment_closed
        self.app = create_app(self.control, self.faults, self.client, self.compute)
        context, self.ca_path = server_context(Path(ca_dir))
        psc_context, _ = server_context(Path(ca_dir), PSC_NAMES)
        handler = _QuietHandler if quiet else _Handler
        self.psc_port = psc_port or free_port()
        self.psc = PscListeners(self.app, self.psc_port, psc_context, handler)
        self.compute.attach(self.psc)
        self.compute.ip_free = self.psc.free
        http = make_server(host, port, self.app, threaded=True, request_handler=handler)
        try:
            tls = _tls_server(host, tls_port, self.app, handler, context)
        except BaseException:
            http.server_close()
            raise
        self._servers = [http, tls]
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.port = http.server_port
        self.host = f"{shown}:{self.port}"
        self.url = f"http://{self.host}"
        self.dedicated_dns = f"{shown}:{tls.server_port}"
        self.registry.dns = self.dedicated_dns  # clients follow it to the query routes
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._stop_lock = threading.Lock()

    def start(self) -> VertexEmulator:
        """Serve in daemon threads; returns at once (the sockets are already listening)."""
        for server, name in zip(self._servers, ("vertex-http", "vertex-tls"), strict=True):
            thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and stop every engine (TERM then KILL); idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if self._threads:
            for server in self._servers:
                server.shutdown()
            for thread in self._threads:
                thread.join(10)
        for server in self._servers:
            server.server_close()
        self.compute.close()
        self.psc.close()
        self.control.shutdown()
        self.client.close()

    def state(self) -> dict[str, Any]:
        with self.app.test_client() as client:
            return client.get("/emulator/state").get_json()

    def __enter__(self) -> VertexEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    engine: str = "auto",
    cache_dir: Path | str | None = None,
    tls_port: int = 0,
    ca_dir: Path | str = DEFAULT_DIR,
    capacity: Table | None = None,
    psc_port: int = 0,
) -> None:
    """Run the emulator until SIGINT or SIGTERM; engines stop with it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    emulator = VertexEmulator(
        host,
        port,
        engine,
        cache_dir,
        quiet=False,
        tls_port=tls_port,
        ca_dir=ca_dir,
        capacity=capacity,
        psc_port=psc_port,
    )
    atexit.register(emulator.stop)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    print(
        f"modeldrop Vertex AI emulator: control plane {emulator.url}, dedicated endpoints "
        f"https://{emulator.dedicated_dns}, Private Service Connect endpoints on port "
        f"{emulator.psc_port} of their addresses (Compute Engine at {emulator.url}/compute/v1; "
        f"engine {emulator.control.engine_kind}, cache {emulator.control.cache_dir})\n"
        f"CA of the dedicated and PSC endpoints: {emulator.ca_path} "
        f"(export REQUESTS_CA_BUNDLE={emulator.ca_path})",
        file=sys.stderr,
        flush=True,
    )
    try:
        emulator.start()
        stop.wait()
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
