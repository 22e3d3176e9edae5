"""Plain REST calls to the Vertex AI API (v1beta1), without google-cloud-aiplatform.

Reads (operations, endpoints), label updates, undeploy and delete are single JSON requests;
doing them over REST keeps the SDK's import cost out of every function but the one that deploys.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import requests

from modeldrop.adapters.vertex_errors import classify
from modeldrop.settings import Settings

TIMEOUT = (10.0, 60.0)


class NotFoundError(LookupError):
    """The resource does not exist."""


def api_host(settings: Settings, region: str | None = None) -> str:
    """The Vertex AI API endpoint: the regional Google host (of `region`, default the settings'
    region), or the override (the emulator, which serves every region)."""
    return settings.vertex_api_endpoint or f"{region or settings.region}-aiplatform.googleapis.com"


def region_of(resource: str) -> str | None:
    """The region of a resource name (projects/P/locations/REGION/...), or None."""
    parts = resource.split("/")
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "locations" and parts[3]:
        return parts[3]
    return None


def google_session(anonymous: bool) -> requests.Session:
    """A requests session with the environment's Google credentials (cloud-platform scope), or a
    plain one when `anonymous` (the emulator)."""
    if anonymous:
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


class GoogleApi:
    """Base of the REST clients: the session given (tests), else one made on first use with
    Google credentials, or anonymous for the emulator (`settings.vertex_anonymous`)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self._given_session = session

    @cached_property
    def session(self) -> requests.Session:
        if self._given_session is not None:
            return self._given_session
        return self.new_session()

    def new_session(self) -> requests.Session:
        """The session made on first use when none was given (a subclass may tune it)."""
        return google_session(self.settings.vertex_anonymous)


class VertexRest:
    """JSON over HTTP to `{api endpoint}/v1beta1/...` with Google credentials (or none), on the
    host of `region` (default the settings' region)."""

    def __init__(self, settings: Settings, region: str | None = None) -> None:
        self.settings = settings
        self.region = region or settings.region
        endpoint = api_host(settings, self.region)
        self.base = endpoint if "://" in endpoint else f"https://{endpoint}"

    @cached_property
    def session(self) -> requests.Session:
        return google_session(self.settings.vertex_anonymous)

    def call(
        self,
        method: str,
        resource: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request to /v1beta1/{resource}; raises NotFoundError or a classified DeployError."""
        from google.api_core import exceptions

        response = self.session.request(
            method, f"{self.base}/v1beta1/{resource}", json=body, params=params, timeout=TIMEOUT
        )
        if response.status_code == 404:
            raise NotFoundError(resource)
        if response.status_code >= 400:
            raise classify(exceptions.from_http_response(response), self.region)
        return response.json() if response.content else {}
