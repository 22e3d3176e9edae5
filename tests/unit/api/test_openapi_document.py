"""The packaged OpenAPI document: valid, and in step with the route table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modeldrop.api.app import openapi_document
from modeldrop.api.auth import PUBLIC_PATHS
from modeldrop.api.routes import ROUTES, route

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def resolve(ref: str) -> Any:
    node: Any = openapi_document()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_document_is_valid_openapi():
    schemathesis = pytest.importorskip("schemathesis")
    document = openapi_document()
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()  # raises on an invalid document


def test_every_reference_resolves():
    found = list(refs(openapi_document()))
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        assert isinstance(resolve(ref), dict), ref


def test_every_route_is_documented_and_nothing_else():
    table = {(r.method, r.pattern.pattern): r.name for r in ROUTES}
    documented = {
        (method, route(method, path, "").pattern.pattern): operation.get("operationId")
        for method, path, operation in operations()
    }
    assert documented == table  # same routes, and each operationId is the route's name


def test_openai_routes_answer_openai_errors_and_the_others_modeldrop_errors():
    openai = {r.name for r in ROUTES if r.openai}
    for method, path, operation in operations():
        expected = "OpenAIError" if operation["operationId"] in openai else "Error"
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            if "$ref" in response:
                response = resolve(response["$ref"])
            schema = response["content"]["application/json"]["schema"]
            named = {ref.rsplit("/", 1)[-1] for ref in refs(schema)}
            assert expected in named, (method, path, status)


def test_only_public_paths_skip_the_bearer_token_and_the_rest_may_get_401():
    assert {"bearerAuth"} <= set(openapi_document()["components"]["securitySchemes"])
    for method, path, operation in operations():
        public = operation.get("security") == []
        assert public == (path in PUBLIC_PATHS), (method, path)
        assert ("401" in operation["responses"]) != public, (method, path)
        assert "500" in operation["responses"], (method, path)


def test_the_status_body_names_every_field_the_api_shows():
    from datetime import UTC, datetime

    from modeldrop.api.views import status_body
    from modeldrop.domain.deployment import new_deployment

    at = datetime(2026, 1, 1, tzinfo=UTC)
    body = status_body(new_deployment("b", "models/m", "f" * 64, 1, at), "http://api", at)
    schema = openapi_document()["components"]["schemas"]["Deployment"]
    assert set(body) == set(schema["properties"]) == set(schema["required"])


def test_the_model_status_is_every_deployment_field_plus_serving_and_revisions():
    schemas = openapi_document()["components"]["schemas"]
    deployment, model = schemas["Deployment"], schemas["ModelStatus"]
    assert set(model["properties"]) == set(deployment["properties"]) | {"serving", "revisions"}
    assert set(model["required"]) == set(model["properties"])
    for name in deployment["properties"]:
        assert model["properties"][name] == {
            "$ref": f"#/components/schemas/Deployment/properties/{name}"
        }
