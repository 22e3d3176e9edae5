"""Compute Engine v1 over REST, for the consumer side of a private (PSC) Vertex AI endpoint.

A private endpoint publishes a service attachment (`deployedModels[].privateEndpoints.
serviceAttachment`); a client network reaches it through a Private Service Connect endpoint: an
internal address reserved in one of its subnetworks and a forwarding rule from that address to
the service attachment, in the endpoint's region
(https://cloud.google.com/vertex-ai/docs/predictions/private-service-connect, "Create PSC
Endpoint Manually": `gcloud compute addresses create --region --subnet`, `gcloud compute
forwarding-rules create --address --network --target-service-attachment`, then
`pscConnectionStatus` ACCEPTED). Plain JSON requests with `requests` (google.auth's session on
Google Cloud, a plain one for the local emulator), like `vertex_rest` and `serving_logs`:

    POST   {base}/compute/v1/projects/P/regions/R/addresses
           {"name", "addressType": "INTERNAL", "purpose": "GCE_ENDPOINT", "subnetwork"}
    GET    .../addresses/NAME          DELETE .../addresses/NAME
    POST   .../forwardingRules
           {"name", "network", "IPAddress", "target": SERVICE_ATTACHMENT, "loadBalancingScheme": ""}
    GET    .../forwardingRules/NAME    DELETE .../forwardingRules/NAME
    GET    .../operations/OPERATION    POST .../operations/OPERATION/wait

(https://cloud.google.com/compute/docs/reference/rest/v1/addresses,
.../forwardingRules, .../regionOperations; field shapes as google-api-python-client documents
them in docs/dyn/compute_v1.*.html.) Inserts and deletes answer a regional Operation (kind
compute#operation, status PENDING | RUNNING | DONE, error.errors[] {code, message},
httpErrorStatusCode); `wait` blocks up to about 2 minutes and answers it done or not. A PSC
endpoint's forwarding rule sends an empty loadBalancingScheme: with a service attachment target
"supplying any load balancing scheme - even INTERNAL - is rejected" (public Terraform modules of
google_compute_forwarding_rule; the Terraform resource defaults to EXTERNAL, so they send "").
IPAddress takes the address's IP or its URL; the rule answers it as the IP.

Errors come as {"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}
(reasons such as alreadyExists, notFound, resourceInUseByAnotherResource, resourceNotReady,
forbidden, quotaExceeded, rateLimitExceeded, accessNotConfigured; a 403 names the permission:
"Required 'compute.addresses.createInternal' permission for '...'"), or, after an accepted call,
in the operation (error.errors[].code such as QUOTA_EXCEEDED, RESOURCE_NOT_FOUND,
IP_SPACE_EXHAUSTED). Every call is idempotent by name: an insert that finds the resource there
(409 alreadyExists) answers None, a get or a delete of a missing one None or True.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import requests

from modeldrop.adapters.vertex_rest import GoogleApi
from modeldrop.domain.findings import excerpt
from modeldrop.service.ports import DeployError
from modeldrop.settings import Settings

DEFAULT_HOST = "https://compute.googleapis.com"
TIMEOUT = (10.0, 30.0)
WAIT_TIMEOUT = (10.0, 150.0)  # regionOperations.wait holds the call up to about 2 minutes
MAX_BODY = 256 * 1024  # bytes read of any answer (an operation or a resource is a few KB)
NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1035, as the API requires
PROJECT = re.compile(r"[a-z0-9][-a-z0-9.:]{1,62}")  # project ids, domain-scoped ids, numbers
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
OPERATION = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_]{0,127}")
REFERENCE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_./:]{0,511}")
PERMISSION = re.compile(r"\b(compute\.[a-zA-Z]+\.[a-zA-Z]+)\b")

# The permission each call needs (named in a hint when a refusal does not say it).
PERMISSIONS = {
    "addresses.insert": "compute.addresses.createInternal (and compute.subnetworks.use)",
    "addresses.get": "compute.addresses.get",
    "addresses.delete": "compute.addresses.deleteInternal",
    "forwardingRules.insert": "compute.forwardingRules.pscCreate (and compute.addresses.use, "
    "compute.networks.use)",
    "forwardingRules.get": "compute.forwardingRules.get",
    "forwardingRules.delete": "compute.forwardingRules.pscDelete",
    "regionOperations.get": "compute.regionOperations.get",
    "regionOperations.wait": "compute.regionOperations.get",
}
ROLE = "roles/compute.networkAdmin"

# reasons (HTTP errors) and codes (operation errors), compared lower-case without underscores
QUOTA = {"quotaexceeded", "ipspaceexhausted", "ipspaceexhaustedwithdetails"}
DISABLED = {"accessnotconfigured", "servicedisabled"}
DENIED = {"forbidden", "insufficientpermissions", "iampermissiondenied", "permissionsdenied"}
IN_USE = {"resourceinusebyanotherresource", "ipinusebyanotherresource"}
BUSY = {
    "resourcenotready",
    "ratelimitexceeded",
    "userratelimitexceeded",
    "backenderror",
    "internalerror",
}
NOT_FOUND = {"notfound", "resourcenotfound"}


def _key(reason: str) -> str:
    return reason.replace("_", "").lower()


def classify(status: int, reason: str, message: str, call: str, resource: str) -> DeployError:
    """A Compute Engine refusal (HTTP `status` with `reason`, or an operation error's HTTP
    status and code) as a DeployError with a stable code: COMPUTE_PERMISSION_DENIED,
    COMPUTE_API_DISABLED, COMPUTE_QUOTA, COMPUTE_IN_USE, COMPUTE_NOT_FOUND, COMPUTE_INVALID, or
    COMPUTE_UNAVAILABLE (retryable)."""
    key = _key(reason)
    said = (
        f"Compute Engine refused {call} of {resource} (HTTP {status}"
        + (f" {reason}" if reason else "")
        + f"): {excerpt(message, 300)}"
    )
    deleting = call.endswith(".delete")
    if key in DISABLED:
        project = resource.split("/")[1] if resource.startswith("projects/") else "PROJECT"
        return DeployError(
            said,
            "Enable the Compute Engine API in the project of the network: gcloud services enable "
            f"compute.googleapis.com --project={project}",
            code="COMPUTE_API_DISABLED",
        )
    lowered = message.lower()
    exhausted = "quota" in lowered and "exceeded" in lowered and status != 429
    if key in QUOTA or (exhausted and key not in BUSY):  # rate limits read "Quota exceeded" too
        return DeployError(
            said,
            "A Compute Engine quota or the subnetwork's free addresses ran out: raise the "
            "quota the message names (IAM & Admin > Quotas), delete unused addresses or "
            "forwarding rules, or use a subnetwork with free IPs.",
            code="COMPUTE_QUOTA",
        )
    if key in DENIED or status in (401, 403):
        named = PERMISSION.search(message)
        needed = named.group(1) if named else PERMISSIONS.get(call, "the Compute Engine API")
        return DeployError(
            said,
            f"The caller needs {needed} on {resource.split('/regions/')[0]}, e.g. {ROLE} on the "
            "project of the VPC network.",
            code="COMPUTE_PERMISSION_DENIED",
        )
    if key in IN_USE:
        hint = (
            "A forwarding rule still uses the address: delete the rule first (or wait until its "
            "deletion is done), then try again."
            if deleting
            else "Another forwarding rule uses this address: reserve another address, or delete "
            "that rule."
        )
        return DeployError(said, hint, code="COMPUTE_IN_USE", retryable=deleting)
    if key in BUSY or status == 429 or status >= 500:
        return DeployError(
            said,
            "Compute Engine is busy or unavailable, or the resource is changing; try again "
            "shortly.",
            code="COMPUTE_UNAVAILABLE",
            retryable=True,
        )
    if key in NOT_FOUND or status == 404:
        return DeployError(
            said,
            "Check the project, the region, the subnetwork or network, and the service "
            "attachment (the endpoint's privateEndpoints.serviceAttachment, which goes when the "
            "endpoint has no deployed model).",
            code="COMPUTE_NOT_FOUND",
        )
    if status == 409:  # a conflict with a concurrent change (alreadyExists is handled by callers)
        return DeployError(
            said,
            "Another change to the resource is in progress; try again shortly.",
            code="COMPUTE_UNAVAILABLE",
            retryable=True,
        )
    return DeployError(
        said,
        "Compute Engine refused the request as invalid; check the names (lowercase letters, "
        "digits and '-', at most 63), the subnetwork and network, and the service attachment.",
        code="COMPUTE_INVALID",
    )


def error_of(body: bytes) -> tuple[str, str]:
    """(reason, message) of an error answer: {"error": {"message", "errors": [{"reason"}]}},
    or its text when it is something else."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "", body.decode("utf-8", "replace")
    if not isinstance(error, dict):
        return "", body.decode("utf-8", "replace")
    message = error.get("message")
    errors = error.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    reason = first.get("reason") or error.get("status") or ""
    details = error.get("details")
    if not reason and isinstance(details, list):  # the newer google.rpc.Status shape
        info = next((d for d in details if isinstance(d, dict) and d.get("reason")), {})
        reason = info.get("reason", "")
    return str(reason), str(message if message is not None else first.get("message", ""))


def is_done(operation: dict[str, Any]) -> bool:
    """Whether a Compute Engine operation is DONE (with or without an error)."""
    return operation.get("status") == "DONE"


def operation_error(operation: dict[str, Any]) -> DeployError | None:
    """The failure of a DONE operation as a DeployError (codes as `classify`), or None."""
    error = operation.get("error")
    errors = error.get("errors") if isinstance(error, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    first = errors[0] if isinstance(errors[0], dict) else {}
    code = str(first.get("code") or "")
    message = "; ".join(
        str(e.get("message") or e.get("code") or "") for e in errors[:3] if isinstance(e, dict)
    )
    status = operation.get("httpErrorStatusCode")
    kind = str(operation.get("operationType") or "operation")
    target = str(operation.get("targetLink") or operation.get("name") or "")
    resource = target.split("/compute/v1/", 1)[-1]
    collection = resource.split("/")[4] if resource.count("/") >= 5 else "resource"
    return classify(
        status if isinstance(status, int) else 400,
        code,
        message,
        f"{collection}.{kind}",
        resource,
    )


def _reference(value: str, field: str) -> str:
    if not isinstance(value, str) or not REFERENCE.fullmatch(value):
        raise DeployError(
            f"{field} {excerpt(value, 100)} is not a Compute Engine resource name or URL.",
            "Pass a name, a projects/... path or a https://.../compute/v1/... URL.",
            code="COMPUTE_INVALID",
        )
    return value


class ComputeRest(GoogleApi):
    """Addresses, forwarding rules and region operations of Compute Engine v1, by name.

    The base URL is `settings.compute_api_endpoint` (MODELDROP_COMPUTE_API_ENDPOINT; locally the
    Vertex emulator's URL), else https://compute.googleapis.com; Google credentials unless
    `settings.vertex_anonymous` (the emulator)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__(settings, session)
        self.base = (settings.compute_api_endpoint or DEFAULT_HOST).rstrip("/") + "/compute/v1"

    # addresses
    def insert_address(
        self, project: str, region: str, name: str, subnetwork: str
    ) -> dict[str, Any] | None:
        """Reserve an internal address (an IP of `subnetwork`: a name, a path or a URL) named
        `name`; the operation, or None when an address of that name exists already."""
        path = self._path(project, region, "addresses")
        subnet = _reference(subnetwork, "subnetwork")
        if "/" not in subnet:
            subnet = f"projects/{project}/regions/{region}/subnetworks/{subnet}"
        body = {
            "name": _name(name),
            "addressType": "INTERNAL",
            "purpose": "GCE_ENDPOINT",
            "subnetwork": subnet,
        }
        return self._insert("addresses.insert", path, body)

    def get_address(self, project: str, region: str, name: str) -> dict[str, Any] | None:
        """The address (its IP in `address`, `status` RESERVING | RESERVED | IN_USE), or None."""
        return self._get("addresses.get", self._path(project, region, "addresses", name))

    def delete_address(self, project: str, region: str, name: str) -> bool:
        """Start deleting the address; True once it is gone (call again until then).
        COMPUTE_IN_USE (retryable) while a forwarding rule still uses it."""
        return self._delete("addresses.delete", self._path(project, region, "addresses", name))

    # forwarding rules
    def insert_forwarding_rule(
        self,
        project: str,
        region: str,
        name: str,
        network: str,
        address_self_link_or_ip: str,
        target_service_attachment: str,
    ) -> dict[str, Any] | None:
        """Create the PSC endpoint: a forwarding rule named `name` in `network` (a name, a path
        or a URL) from the address (its IP, its URL or path, or its name in this region) to the
        service attachment; the operation, or None when a rule of that name exists already."""
        path = self._path(project, region, "forwardingRules")
        net = _reference(network, "network")
        if "/" not in net:
            net = f"projects/{project}/global/networks/{net}"
        address = _reference(address_self_link_or_ip, "address")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            if "/" not in address:
                address = f"projects/{project}/regions/{region}/addresses/{_name(address)}"
        target = _reference(target_service_attachment, "service attachment")
        if "/serviceAttachments/" not in target:
            raise DeployError(
                f"{excerpt(target, 100)} is not a service attachment.",
                "Pass the endpoint's deployedModels[].privateEndpoints.serviceAttachment "
                "(projects/P/regions/R/serviceAttachments/NAME).",
                code="COMPUTE_INVALID",
            )
        body = {
            "name": _name(name),
            "network": net,
            "IPAddress": address,
            "target": target,
            "loadBalancingScheme": "",
        }
        return self._insert("forwardingRules.insert", path, body)

    def get_forwarding_rule(self, project: str, region: str, name: str) -> dict[str, Any] | None:
        """The rule (`IPAddress`, `pscConnectionStatus` PENDING | ACCEPTED | REJECTED | CLOSED |
        NEEDS_ATTENTION, `pscConnectionId`), or None."""
        return self._get(
            "forwardingRules.get", self._path(project, region, "forwardingRules", name)
        )

    def delete_forwarding_rule(self, project: str, region: str, name: str) -> bool:
        """Start deleting the rule; True once it is gone (call again until then)."""
        return self._delete(
            "forwardingRules.delete", self._path(project, region, "forwardingRules", name)
        )

    # operations
    def get_operation(self, project: str, region: str, operation_name: str) -> dict[str, Any]:
        """The region operation (check `is_done` and `operation_error`); COMPUTE_NOT_FOUND when
        it is gone (completed operations are kept for a limited time)."""
        path = self._operation_path(project, region, operation_name)
        status, data = self._send("regionOperations.get", "GET", path)
        return self._answer("regionOperations.get", path, status, data)

    def wait_operation(self, project: str, region: str, operation_name: str) -> dict[str, Any]:
        """regionOperations.wait: the operation once DONE, or as it stands after up to about
        2 minutes (it may still be running)."""
        path = self._operation_path(project, region, operation_name) + "/wait"
        status, data = self._send("regionOperations.wait", "POST", path, timeout=WAIT_TIMEOUT)
        return self._answer("regionOperations.wait", path, status, data)

    # the requests
    def _path(self, project: str, region: str, collection: str, name: str | None = None) -> str:
        if not isinstance(project, str) or not PROJECT.fullmatch(project):
            raise _invalid("project", project)
        if not isinstance(region, str) or not REGION.fullmatch(region):
            raise _invalid("region", region)
        path = f"projects/{project}/regions/{region}/{collection}"
        return path if name is None else f"{path}/{_name(name)}"

    def _operation_path(self, project: str, region: str, operation: str) -> str:
        if not isinstance(operation, str) or not OPERATION.fullmatch(operation):
            raise _invalid("operation", operation)
        return f"{self._path(project, region, 'operations')}/{operation}"

    def _insert(self, call: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        status, data = self._send(call, "POST", path, body)
        resource = f"{path}/{body['name']}"
        if status == 409 and error_of(data)[0] == "alreadyExists":
            return None
        return self._answer(call, resource, status, data)

    def _get(self, call: str, path: str) -> dict[str, Any] | None:
        status, data = self._send(call, "GET", path)
        if status == 404:
            return None
        return self._answer(call, path, status, data)

    def _delete(self, call: str, path: str) -> bool:
        status, data = self._send(call, "DELETE", path)
        if status == 404:
            return True
        if status == 400 and error_of(data)[0] == "resourceNotReady":
            return False  # a deletion (or another change) is under way
        operation = self._answer(call, path, status, data)
        if not is_done(operation):
            return False
        failure = operation_error(operation)
        if failure is not None:
            raise failure
        return True

    def _answer(self, call: str, resource: str, status: int, data: bytes) -> dict[str, Any]:
        if status >= 400:
            reason, message = error_of(data)
            raise classify(status, reason, message, call, resource)
        if len(data) > MAX_BODY:
            raise DeployError(
                f"Compute Engine answered {call} of {resource} with more than {MAX_BODY} bytes.",
                "Check MODELDROP_COMPUTE_API_ENDPOINT: it should be Compute Engine's API.",
                code="COMPUTE_BAD_RESPONSE",
            )
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise DeployError(
                f"Compute Engine answered {call} of {resource} with something other than a JSON "
                f"object: {excerpt(data, 200)}",
                "Check MODELDROP_COMPUTE_API_ENDPOINT: it should be Compute Engine's API.",
                code="COMPUTE_BAD_RESPONSE",
            )
        return answer

    def _send(
        self,
        call: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> tuple[int, bytes]:
        """One request; its status and at most MAX_BODY + 1 bytes of its body. Unreachable is
        COMPUTE_UNAVAILABLE (retryable); unusable credentials COMPUTE_PERMISSION_DENIED."""
        url = f"{self.base}/{path}"
        try:
            response = self.session.request(method, url, json=body, timeout=timeout, stream=True)
            try:
                data = b""
                for chunk in response.iter_content(64 * 1024):
                    data += chunk
                    if len(data) > MAX_BODY:
                        break
                return response.status_code, data[: MAX_BODY + 1]
            finally:
                response.close()
        except requests.RequestException as exc:
            raise DeployError(
                f"Compute Engine could not be reached for {call} of {path}: "
                f"{excerpt(str(exc), 300)}",
                "Try again shortly; check MODELDROP_COMPUTE_API_ENDPOINT and the network.",
                code="COMPUTE_UNAVAILABLE",
                retryable=True,
            ) from exc
        except Exception as exc:  # google.auth: no credentials, or they cannot be refreshed
            if type(exc).__module__.startswith("google.auth"):
                raise DeployError(
                    f"No usable Google credentials for Compute Engine ({call}): "
                    f"{excerpt(str(exc), 300)}",
                    f"Run with a service account that has {ROLE} on the network's project.",
                    code="COMPUTE_PERMISSION_DENIED",
                ) from exc
            raise


def _name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _invalid("name", name)
    return name


def _invalid(what: str, value: Any) -> DeployError:
    return DeployError(
        f"Invalid Compute Engine {what}: {excerpt(value, 100)}.",
        "Names are 1-63 lowercase letters, digits or '-', starting with a letter and not ending "
        "with '-'; regions look like us-central1.",
        code="COMPUTE_INVALID",
    )
