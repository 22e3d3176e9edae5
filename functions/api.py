"""Cloud Function `api` (HTTP): deployment status and queries to deployed models."""

import functions_framework
from flask import Request, Response

from modeldrop.api.app import handle
from modeldrop.settings import Settings

# Read the settings when the instance starts: one it cannot use (say MODELDROP_API_TOKENS set
# to "," with no token, which would turn auth off) stops it before it serves any request.
Settings.from_env()


@functions_framework.http
def api(request: Request) -> Response:
    """Route one HTTP request (see GET /openapi.json)."""
    return handle(request)
