"""Private Service Connect endpoints served for real: one TLS listener per accepted forwarding rule.

On Google Cloud a consumer's PSC endpoint is an internal IP in its VPC whose forwarding rule
targets the service attachment of a private Vertex AI endpoint; clients inside the network query
`https://IP/v1beta1/projects/P/locations/R/endpoints/ID/chat/completions` (also `:predict`,
`:rawPredict`, `:streamRawPredict`, and /v1/), or a private DNS name for that IP. What Vertex AI
documents for them (https://cloud.google.com/vertex-ai/docs/predictions/private-service-connect,
"Get online inferences" and "Support for Transport Layer Security (TLS) certificates"):
- "There are two ports open, 443 with TLS using self-signed certificate and 80 without TLS";
- the certificate "includes the subject alternative name (SAN) *.prediction.p.vertexai.goog",
  is "not unique to a specific endpoint", and clients reach it by the FQDN
  ENDPOINT_ID-REGION-PROJECT_NUMBER.prediction.p.vertexai.goog, an A record in a private DNS
  zone prediction.p.vertexai.goog. for the PSC endpoint's IP (`dns_name`), after adding the
  certificate to their trust store; the samples that use the bare IP turn verification off
  (curl -k, verify=False), as the SDK's PrivateEndpoint.predict(endpoint_override=IP) does.

Here each accepted rule gets a listener on `IP:port` (the emulator's --psc-port; the IP from
`compute`'s loopback pool), over TLS with a certificate for *.prediction.p.vertexai.goog signed
by the emulator's CA (`tls.PSC_NAMES`): verify it against vertex-ca.pem with the documented
name as the TLS server name (SNI and hostname check), connecting to the IP. (No plain-http port.)
A listener answers the query routes only, for the endpoint its attachment publishes (`PscApp`
marks the request; `Registry.query_access` checks it); anything else is 404.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from modeldrop.local.vertex.resources import Attachment
from modeldrop.local.vertex.tls import PSC_DOMAIN

log = logging.getLogger("modeldrop.vertex")

ENVIRON_KEY = "modeldrop.psc_attachment"  # the service attachment a request came through
QUERY = re.compile(
    r"/(?:v1|v1beta1)/projects/[^/]+/locations/[^/]+/endpoints/[^/:]+"
    r"(?:/chat/completions|:predict|:rawPredict|:streamRawPredict)"
)
POLL_S = 0.05  # how soon a listener notices it is told to stop
BIND_TRIES = 20  # binds tried, POLL_S apart, while an earlier listener of the IP closes

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def dns_name(endpoint: str, project_number: str) -> str:
    """The documented private DNS name of a PSC endpoint for `endpoint`
    (projects/P/locations/REGION/endpoints/ID): ID-REGION-PROJECT_NUMBER.prediction.p.vertexai.goog.
    The certificate's *.prediction.p.vertexai.goog covers it (and any other one-label name)."""
    parts = endpoint.split("/")
    return f"{parts[5]}-{parts[3]}-{project_number}.{PSC_DOMAIN}"


def tls_server(
    host: str,
    port: int,
    app: WSGIApp,
    handler: type[WSGIRequestHandler],
    context: ssl.SSLContext,
) -> BaseWSGIServer:
    """A threaded TLS server whose connections shake hands in their own thread, on their first
    read (werkzeug would do it in the accept loop, where one silent client holds up all)."""
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    server.ssl_context = context  # werkzeug: wsgi.url_scheme https; SSL errors logged, not raised
    return server


class PscApp:
    """The WSGI app behind one PSC endpoint: the emulator's query routes, marked with the
    service attachment they came through; 404 for anything else."""

    def __init__(self, app: WSGIApp, attachment: Attachment, ip: str) -> None:
        self.app = app
        self.attachment = attachment
        self.ip = ip

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not QUERY.fullmatch(path):
            body = json.dumps(
                {
                    "error": {
                        "code": 404,
                        "message": f"{environ.get('REQUEST_METHOD')} {path} is not served by a "
                        "Private Service Connect endpoint: it answers POST /v1[beta1]/projects/P/"
                        "locations/R/endpoints/ID/chat/completions, :predict, :rawPredict and "
                        ":streamRawPredict.",
                        "status": "NOT_FOUND",
                    }
                }
            ).encode()
            start_response(
                "404 NOT FOUND",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        environ[ENVIRON_KEY] = self.attachment.name
        return self.app(environ, start_response)


class PscListeners:
    """The TLS listeners of accepted PSC endpoints, one per IP, all on `port`; thread-safe."""

    def __init__(
        self,
        app: WSGIApp,
        port: int,
        context: ssl.SSLContext,
        handler: type[WSGIRequestHandler] = WSGIRequestHandler,
    ) -> None:
        self.app = app
        self.port = port
        self.context = context
        self.handler = handler
        # ip -> (server, its thread, the attachment, the token start answered)
        self._servers: dict[str, tuple[BaseWSGIServer, threading.Thread, Attachment, int]] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)

    def start(self, ip: str, attachment: Attachment) -> int:
        """Listen on ip:port for `attachment`'s endpoint; a token for `stop`. OSError if the
        port is taken there."""
        self.stop(ip)
        app = PscApp(self.app, attachment, ip)
        for wait in (*[POLL_S] * BIND_TRIES, None):
            try:
                server = tls_server(ip, self.port, app, self.handler, self.context)
                break
            except OSError as exc:  # a listener of this IP may still be closing
                if wait is None or exc.errno != errno.EADDRINUSE:
                    raise
                time.sleep(wait)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": POLL_S},
            name=f"psc-{ip}",
            daemon=True,
        )
        thread.start()
        token = next(self._tokens)
        with self._lock:
            self._servers[ip] = (server, thread, attachment, token)
        log.info("psc: listening on https://%s:%d for %s", ip, self.port, attachment.endpoint)
        return token

    def stop(self, ip: str, token: int | None = None) -> None:
        """Stop the listener on `ip` (only the one `token` started, when given): it accepts no
        more connections; requests under way finish."""
        with self._lock:
            entry = self._servers.get(ip)
            if entry is None or (token is not None and entry[3] != token):
                return
            del self._servers[ip]
        server, thread, _, _ = entry
        server.shutdown()
        thread.join(5)
        server.server_close()
        log.info("psc: stopped listening on %s:%d", ip, self.port)

    def free(self, ip: str) -> bool:
        """Whether ip:port can be listened on now (no other process or listener holds it)."""
        with self._lock:
            if ip in self._servers:
                return False
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((ip, self.port))
            except OSError:
                return False
        return True

    def report(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"url": f"https://{ip}:{self.port}", "endpoint": a.endpoint, "attachment": a.name}
                for ip, (_, _, a, _) in self._servers.items()
            ]

    def close(self) -> None:
        with self._lock:
            ips = list(self._servers)
        for ip in ips:
            with contextlib.suppress(OSError):
                self.stop(ip)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` right now (for --psc-port 0: the same port on every PSC IP)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
