"""Optional bearer tokens (MODELDROP_API_TOKENS); on Google Cloud, IAM invoker guards the api."""

from __future__ import annotations

import hmac

from modeldrop.api.errors import ApiError

# Documented paths (routes.Route.path) that need no token: liveness, and the dashboard's page
# and assets, which hold no data (the page sends the token the user enters with its calls).
PUBLIC_PATHS = frozenset({"/healthz", "/ui", "/ui/{asset}"})


def check_bearer(authorization: str | None, tokens: tuple[str, ...], path: str) -> None:
    """Raise 401 unless a configured token is presented (constant-time comparisons). `path`
    is the matched route's documented path (placeholders kept), never the request's."""
    if not tokens or path in PUBLIC_PATHS:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    given = presented.strip().encode() if scheme.lower() == "bearer" else b""
    matched = False
    for token in tokens:  # compare with every token: the time taken does not tell which matched
        matched |= hmac.compare_digest(given, token.encode())
    if not matched:
        raise ApiError(
            "A valid bearer token is required.",
            "Send 'Authorization: Bearer <token>' with one of the tokens in MODELDROP_API_TOKENS.",
            code="UNAUTHENTICATED",
            status=401,
        )
