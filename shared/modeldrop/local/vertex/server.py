"""HTTP routes of the local Vertex AI emulator: they parse, call the emulator's parts, answer.

Control plane (as the v1beta1 REST transport calls it): `:deploy`, operations (get, and list
of a location) under /ui and /v1beta1, endpoints GET/PATCH/DELETE, `:undeployModel`, models
GET/DELETE. Dedicated-endpoint queries (clients reach them at https://{dedicatedEndpointDns},
the emulator's TLS port): `/chat/completions`, `:predict`, `:streamRawPredict`, `:rawPredict`.
ModelService `:recommendSpec` answers from the capacity table. Cloud Logging's
`POST /v2/entries:list` answers from the engines' output (`logs`). Compute Engine v1's
addresses, forwardingRules and regionOperations (get, wait) under /compute/v1/projects/P/regions/R
answer from `compute` (Private Service Connect endpoints; errors in Compute Engine's shape).
Admin: /emulator/state, /emulator/faults (a "stockout" fault makes a deploy's operation stock
out), /emulator/capacity. Every route answers on both ports; `emulator.VertexEmulator` serves
them. A private (PSC) endpoint's queries answer only through its PSC endpoint's listener (`psc`),
which serves the query routes alone.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, after_this_request, request
from werkzeug.exceptions import HTTPException

from modeldrop.domain.deployment import endpoint_name, location_name
from modeldrop.local.vertex import translate
from modeldrop.local.vertex.capacity import parse_capacity, recommend_spec
from modeldrop.local.vertex.checks import requested_accelerator
from modeldrop.local.vertex.compute import Compute, ComputeError
from modeldrop.local.vertex.compute import fault_error as compute_fault
from modeldrop.local.vertex.control import ControlPlane
from modeldrop.local.vertex.engines import Engine
from modeldrop.local.vertex.errors import RpcError, invalid
from modeldrop.local.vertex.faults import STOCKOUT, FaultInjector, faults_from_json
from modeldrop.local.vertex.proxy import EngineClient, relay
from modeldrop.local.vertex.psc import ENVIRON_KEY

log = logging.getLogger("modeldrop.vertex")

LOC = "projects/<project>/locations/<location>"
API = "<any(v1beta1, v1):version>"
OPS = "<any(ui, v1beta1, v1):api>"
EP = f"/{API}/{LOC}/endpoints/<endpoint>"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
GCE = "/compute/v1/projects/<project>/regions/<region>"
# Compute Engine routes the emulator answers: (HTTP method, path under GCE, collection, method,
# Compute's handler). insert takes the JSON body; list takes no filter; the others a name.
COMPUTE_ROUTES = (
    ("POST", "/addresses", "addresses", "insert", "insert_address"),
    ("GET", "/addresses", "addresses", "list", "list_addresses"),
    ("GET", "/addresses/<name>", "addresses", "get", "get_address"),
    ("DELETE", "/addresses/<name>", "addresses", "delete", "delete_address"),
    ("POST", "/forwardingRules", "forwardingRules", "insert", "insert_forwarding_rule"),
    ("GET", "/forwardingRules", "forwardingRules", "list", "list_forwarding_rules"),
    ("GET", "/forwardingRules/<name>", "forwardingRules", "get", "get_forwarding_rule"),
    ("DELETE", "/forwardingRules/<name>", "forwardingRules", "delete", "delete_forwarding_rule"),
    ("GET", "/operations/<name>", "operations", "get", "get_operation"),
    ("POST", "/operations/<name>/wait", "operations", "wait", "wait_operation"),
)


def create_app(
    control: ControlPlane,
    faults: FaultInjector,
    client: EngineClient,
    compute: Compute | None = None,
) -> Flask:
    """The Flask app: every route, errors as google.rpc.Status JSON (Compute Engine's shape
    under /compute)."""
    app = Flask("modeldrop.local.vertex")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # JSONProvider declares it on DefaultJSONProvider only
    registry = control.registry
    compute = compute or Compute(registry.attachment)

    # control plane
    @app.post(f"/v1beta1/{LOC}:deploy")
    def deploy(project: str, location: str) -> Any:
        body = _json_body()
        fault = faults.call("deploy", location_name(project, location), requested_accelerator(body))
        return control.deploy(project, location, body, stockout=fault == STOCKOUT)

    @app.post(f"/v1beta1/{LOC}:recommendSpec")
    def recommend(project: str, location: str) -> Any:
        numbers = "enum-encoding=int" in request.args.get("$alt", "")
        return recommend_spec(control.capacity, location, _json_body(), numbers)

    @app.get(f"/{OPS}/{LOC}/operations")
    def list_operations(api: str, project: str, location: str) -> Any:
        parent = location_name(project, location)
        faults.call("operations", parent)
        args = request.args
        return registry.operations(
            parent, args.get("pageSize", ""), args.get("pageToken", ""), args.get("filter", "")
        )

    @app.get(f"/{OPS}/{LOC}/operations/<operation>")
    @app.get(f"/{OPS}/{LOC}/endpoints/<endpoint>/operations/<operation>")
    def get_operation(api: str, project: str, location: str, operation: str, **kw: str) -> Any:
        name = location_name(project, location)
        if "endpoint" in kw:
            name += f"/endpoints/{kw['endpoint']}"
        name += f"/operations/{operation}"
        faults.call("operations", name)
        return registry.operation(name)

    @app.get(f"/{API}/{LOC}/endpoints")
    def list_endpoints(version: str, project: str, location: str) -> Any:
        parent = location_name(project, location)
        faults.call("endpoints", parent)
        return {"endpoints": registry.endpoints(parent)}

    @app.get(EP)
    def get_endpoint(version: str, project: str, location: str, endpoint: str) -> Any:
        name = endpoint_name(project, location, endpoint)
        faults.call("endpoints", name)
        return registry.endpoint(name)

    @app.patch(EP)
    def update_endpoint(version: str, project: str, location: str, endpoint: str) -> Any:
        name = endpoint_name(project, location, endpoint)
        faults.call("endpoints", name)
        mask = request.args.get("updateMask", request.args.get("update_mask", ""))
        return control.update_endpoint(name, _json_body(), mask)

    @app.delete(EP)
    def delete_endpoint(version: str, project: str, location: str, endpoint: str) -> Any:
        name = endpoint_name(project, location, endpoint)
        faults.call("delete", name)
        return control.delete_endpoint(name)

    @app.post(f"{EP}:undeployModel")
    def undeploy(version: str, project: str, location: str, endpoint: str) -> Any:
        name = endpoint_name(project, location, endpoint)
        faults.call("undeploy", name)
        return control.undeploy(name, _json_body())

    @app.get(f"/{API}/{LOC}/models/<model>")
    def get_model(version: str, project: str, location: str, model: str) -> Any:
        name = f"{location_name(project, location)}/models/{model}"
        faults.call("endpoints", name)
        return registry.model(name)

    @app.delete(f"/{API}/{LOC}/models/<model>")
    def delete_model(version: str, project: str, location: str, model: str) -> Any:
        name = f"{location_name(project, location)}/models/{model}"
        faults.call("delete", name)
        return control.delete_model(name)

    # dedicated-endpoint queries
    def serving(project: str, location: str, endpoint: str) -> tuple[Engine, dict[str, str]]:
        """The engine of a query; the request counts as traffic until its answer is sent (a
        stream's last chunk included), for Scale To Zero."""
        name = endpoint_name(project, location, endpoint)
        registry.query_access(name, request.environ.get(ENVIRON_KEY))
        faults.call("query", name)
        engine, meta = control.serving(name)

        @after_this_request
        def when_sent(response: Response) -> Response:
            response.call_on_close(lambda: control.finished(name, meta["deployedModelId"]))
            return response

        return engine, meta

    @app.post(f"{EP}/chat/completions")
    def chat(version: str, project: str, location: str, endpoint: str) -> Any:
        engine, _ = serving(project, location, endpoint)
        return _forward(client, engine, translate.chat_request(_json_body()))

    @app.post(f"{EP}:predict")
    def predict(version: str, project: str, location: str, endpoint: str) -> Any:
        engine, meta = serving(project, location, endpoint)
        return {"predictions": client.predict(engine, _json_body()), **meta}

    @app.post(f"{EP}:streamRawPredict")
    @app.post(f"{EP}:rawPredict")
    def raw_predict(version: str, project: str, location: str, endpoint: str) -> Any:
        engine, _ = serving(project, location, endpoint)
        method = request.path.rsplit(":", 1)[-1]
        return _forward(client, engine, translate.raw_predict_request(_json_body(), method))

    # Cloud Logging: the serving containers' log (MODELDROP_LOGGING_API_ENDPOINT points here)
    @app.post("/v2/entries:list")
    def list_log_entries() -> Any:
        body = _json_body()
        names = body.get("resourceNames") if isinstance(body, dict) else None
        faults.call("logs", str(names[0]) if isinstance(names, list) and names else "entries")
        return control.logs.list_entries(body)

    # Compute Engine v1: Private Service Connect endpoints (addresses, forwarding rules)
    def compute_view(collection: str, method: str, handler: str) -> Any:
        call = getattr(compute, handler)

        def view(project: str, region: str, name: str = "") -> Any:
            resource = f"projects/{project}/regions/{region}/{collection}" + (
                f"/{name}" if name else ""
            )
            status = faults.status_for("compute", resource)
            if isinstance(status, int):
                raise compute_fault(status, collection, method, resource)
            if method == "insert":
                return call(project, region, _compute_body())
            if method == "list":
                _no_filter()
                return call(project, region)
            return call(project, region, name)

        return view

    for verb, path, collection, method, handler in COMPUTE_ROUTES:
        app.add_url_rule(
            f"{GCE}{path}",
            endpoint=f"compute_{handler}",
            view_func=compute_view(collection, method, handler),
            methods=[verb],
        )

    # admin
    @app.get("/")
    def health() -> Any:
        return {"status": "ok"}

    @app.get("/emulator/state")
    def state() -> Any:
        return {  # resources in REST camelCase; the emulator's own fields in snake_case
            **registry.snapshot(),
            "engines": control.engines(),
            "scale_to_zero": control.scaling(),
            "engine_kind": control.engine_kind,
            "capacity": control.capacity.table(),
            "capacity_in_use": control.capacity.in_use(),
            **compute.snapshot(),
            **faults.report(),
        }

    @app.get("/emulator/capacity")
    def get_capacity() -> Any:
        return {"capacity": control.capacity.table(), "in_use": control.capacity.in_use()}

    @app.post("/emulator/capacity")
    def replace_capacity() -> Any:
        try:
            control.capacity.replace(parse_capacity(_json_body()))
        except ValueError as exc:
            raise invalid(str(exc)) from exc
        return get_capacity()

    @app.get("/emulator/faults")
    def list_faults() -> Any:
        return {"faults": faults.pending(), "fired": faults.fired}

    @app.post("/emulator/faults")
    def add_faults() -> Any:
        faults.add(faults_from_json(_json_body()))
        return {"faults": faults.pending()}

    @app.delete("/emulator/faults")
    def clear_faults() -> Any:
        faults.clear()
        return {"faults": []}

    # errors
    @app.errorhandler(RpcError)
    def api_error(exc: RpcError) -> Any:
        return exc.to_json(), exc.http_status

    @app.errorhandler(ComputeError)
    def compute_error(exc: ComputeError) -> Any:
        return exc.to_json(), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        message = f"{exc.name}: {request.method} {request.path} is not a route of the emulator."
        if request.path.startswith("/compute/"):
            reason = "notFound" if code == 404 else "invalid"
            return ComputeError(code, reason, message).to_json(), code
        return RpcError(
            message if code in (404, 405) else str(exc.description), http_status=code
        ).to_json(), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return RpcError(f"Internal error in the emulator: {exc!r}", http_status=500).to_json(), 500

    return app


def _json_body() -> Any:
    data = request.get_data()
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except ValueError as exc:
        raise invalid(f"Invalid JSON payload received. {exc}.") from exc


def _compute_body() -> Any:
    data = request.get_data()
    try:
        return json.loads(data) if data.strip() else {}
    except ValueError as exc:
        raise ComputeError(400, "parseError", f"Invalid JSON payload received. {exc}.") from exc


def _no_filter() -> None:
    if request.args.get("filter"):
        raise ComputeError(400, "invalid", "The emulator lists without a filter.")


def _forward(client: EngineClient, engine: Engine, query: translate.EngineRequest) -> Response:
    """The engine's answer as is: SSE relayed chunk by chunk, or its status and body."""
    response = client.post(engine, query.path, query.body, stream=query.stream)
    if query.stream and response.status_code == 200:
        return Response(
            relay(response),
            mimetype="text/event-stream",
            headers=SSE_HEADERS,
            direct_passthrough=True,
        )
    with response:
        content_type = response.headers.get("Content-Type", "application/json")
        return Response(response.content, status=response.status_code, content_type=content_type)
