"""Queries to a deployed model's dedicated endpoint: chat/completions, :predict, :streamRawPredict.

A private (Private Service Connect) deployment is queried at its PSC endpoint's internal IP
(`private_endpoint.ip`, port MODELDROP_PSC_PORT), with the certificate checked against the
name the private endpoint's certificate carries (`private_endpoint.tls_name`), never unverified.

Plain requests (no aiplatform import), always over https as the dedicated DNS serves them: with
Google credentials on Google Cloud, anonymous to the local emulator (MODELDROP_VERTEX_ANONYMOUS),
whose certificate verifies against the CA that REQUESTS_CA_BUNDLE names. One pooled session is
reused for every call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from modeldrop.adapters.vertex_rest import GoogleApi
from modeldrop.domain.deployment import Deployment
from modeldrop.errors import ModeldropError
from modeldrop.service.ports import UpstreamError, UpstreamTimeout, UpstreamUnreachable

CONNECT_TIMEOUT = 10.0
POOL_SIZE = 64
HTTPS_PORT = 443


class NamedHostAdapter(HTTPAdapter):
    """Connects to an address but sends `name` as the TLS server name (SNI) and checks the
    certificate against it: chain and hostname verification stay on, against the session's CA
    bundle plus `ca_pem` (MODELDROP_PSC_CA_CERT: Vertex AI's self-signed PSC certificate)."""

    def __init__(self, name: str, ca_pem: str = "") -> None:
        self.name = name
        self.ca_pem = ca_pem
        super().__init__(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs |= {"server_hostname": self.name, "assert_hostname": self.name}
        if self.ca_pem:
            pool_kwargs["ca_cert_data"] = self.ca_pem
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


class DedicatedEndpointClient(GoogleApi):
    """The EndpointClient port over https to `{dedicated_endpoint_dns}/v1beta1/{endpoint}`."""

    def new_session(self) -> requests.Session:
        session = super().new_session()
        # endpoints are addressed directly: skip the per-call scan of proxy environment variables,
        # which is also where requests reads REQUESTS_CA_BUNDLE, so that is read here, once
        session.trust_env = False
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or True
        adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def url(self, deployment: Deployment, suffix: str) -> str:
        """Where a query goes: only ever the endpoint recorded for the deployment, through its
        PSC endpoint's internal address when it is private."""
        private = deployment.private_endpoint
        if private:
            port = self.settings.psc_port
            host = private["ip"] if port == HTTPS_PORT else f"{private['ip']}:{port}"
            self._pin(host, private["tls_name"])
            return f"https://{host}/v1beta1/{deployment.endpoint}{suffix}"
        if not (deployment.endpoint and deployment.endpoint_dns):
            raise ModeldropError(
                f"Deployment {deployment.id} has no endpoint yet (state {deployment.state}).",
                "Wait until it is DEPLOYED.",
                code="NOT_DEPLOYED",
            )
        return f"https://{deployment.endpoint_dns}/v1beta1/{deployment.endpoint}{suffix}"

    def _pin(self, host: str, tls_name: str) -> None:
        """Connections to `host` (an internal IP) check its certificate against `tls_name`, the
        name the private endpoint's certificate carries (verification stays on)."""
        prefix = f"https://{host}/"
        if prefix not in self.session.adapters:
            self.session.mount(prefix, NamedHostAdapter(tls_name, self.settings.psc_ca_certificate))

    def _post(
        self, url: str, body: dict[str, Any], stream: bool, timeout: float | None = None
    ) -> requests.Response:
        read_timeout = timeout or self.settings.upstream_timeout
        try:
            response = self.session.post(
                url, json=body, stream=stream, timeout=(CONNECT_TIMEOUT, read_timeout)
            )
        except requests.Timeout as exc:
            raise UpstreamTimeout(
                f"The model endpoint did not answer within {read_timeout:g} s.",
                "Ask for fewer tokens, or raise MODELDROP_UPSTREAM_TIMEOUT.",
            ) from exc
        except requests.ConnectionError as exc:
            raise UpstreamUnreachable(
                f"The model endpoint could not be reached: {exc.__class__.__name__}.",
                "The endpoint may be scaling or restarting; try again in a minute.",
            ) from exc
        if response.status_code >= 400:
            body_bytes = response.content
            response.close()
            raise UpstreamError(response.status_code, body_bytes, url)
        return response

    def _json(
        self,
        deployment: Deployment,
        suffix: str,
        body: dict[str, Any],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        response = self._post(self.url(deployment, suffix), body, stream=False, timeout=timeout)
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError(response.status_code, response.content, response.url) from exc

    def _stream(self, deployment: Deployment, suffix: str, body: dict[str, Any]) -> Iterator[bytes]:
        response = self._post(self.url(deployment, suffix), body, stream=True)
        return _chunks(response, self.settings.upstream_timeout)

    def chat_completions(
        self, deployment: Deployment, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        return self._json(deployment, "/chat/completions", {**body, "stream": False}, timeout)

    def stream_chat_completions(
        self, deployment: Deployment, body: dict[str, Any]
    ) -> Iterator[bytes]:
        return self._stream(deployment, "/chat/completions", {**body, "stream": True})

    def predict(
        self, deployment: Deployment, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        return self._json(deployment, ":predict", body, timeout)

    def stream_raw_predict(self, deployment: Deployment, body: dict[str, Any]) -> Iterator[bytes]:
        return self._stream(deployment, ":streamRawPredict", body)


def _chunks(response: requests.Response, timeout: float) -> Iterator[bytes]:
    """Raw bytes as they arrive (no re-chunking); the connection is released at the end."""
    try:
        for chunk in response.iter_content(chunk_size=None):
            if chunk:
                yield chunk
    except requests.RequestException as exc:
        raise UpstreamTimeout(
            f"The model endpoint stopped mid-stream ({exc.__class__.__name__}).",
            f"Streams are cut after {timeout:g} s without data.",
        ) from exc
    finally:
        response.close()
