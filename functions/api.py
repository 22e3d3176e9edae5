"""Cloud Function `api` (HTTP): deployment status and queries to deployed models."""

import functions_framework
from flask import Request, Response

from modeldrop.api.app import handle


@functions_framework.http
def api(request: Request) -> Response:
    """Route one HTTP request (see GET /openapi.json)."""
    return handle(request)
