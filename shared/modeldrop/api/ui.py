"""The dashboard: GET /ui (the page) and GET /ui/{asset} (its script, style sheet and icon).

Plain HTML, CSS and JavaScript from package data beside this module (api/ui/), read on the
first request for them (never at import: the api's cold start does not grow) and kept for
the instance's life. Only the names in ASSETS are served: a path never reaches the file
system. The page needs no token (it holds no data); its calls to the api send the one the
user enters. It uses only relative URLs, so it works under any path prefix (a proxy that
mounts the api at /something/)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from flask import Response

from modeldrop.api.errors import ApiError
from modeldrop.domain.findings import excerpt

PAGE = "index.html"
ASSETS = {
    "app.js": "application/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}
# No inline script or style, nothing from elsewhere, never framed; the page calls its own api.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # fetched again on each load: a new release shows at once
}


@cache
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("ui", name).read_bytes()


def _serve(name: str, mimetype: str) -> Response:
    return Response(_read(name), mimetype=mimetype, headers=HEADERS)


def page() -> Response:
    """GET /ui: the dashboard's page."""
    return _serve(PAGE, "text/html")


def asset(asset: str) -> Response:
    """GET /ui/{asset}: one of ASSETS; 404 for any other name."""
    mimetype = ASSETS.get(asset)
    if mimetype is None:
        raise ApiError(
            f"The dashboard has no asset {excerpt(asset)}.",
            f"Open GET /ui; its assets are {', '.join(sorted(ASSETS))}.",
            code="NOT_FOUND",
            status=404,
        )
    return _serve(asset, mimetype)
