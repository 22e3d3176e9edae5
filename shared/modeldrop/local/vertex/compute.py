"""A minimal Compute Engine v1 for Private Service Connect endpoints, in memory, as REST JSON.

What a consumer does to reach a private (PSC) Vertex AI endpoint: reserve an internal address in
a subnetwork (`addresses.insert`), create a forwarding rule from it to the endpoint's service
attachment (`forwardingRules.insert`), poll the region operations, and later delete both. This
module keeps those resources and their operations; `psc` turns an accepted forwarding rule into
a TLS listener on the address's IP, and `server` serves the routes under /compute/v1.

Shapes and wording follow the real API:
- Address, ForwardingRule and Operation fields: the Compute Engine v1 REST reference, as
  google-api-python-client documents it (docs/dyn/compute_v1.addresses.html,
  compute_v1.forwardingRules.html; https://cloud.google.com/compute/docs/reference/rest/v1).
  Addresses: kind compute#address, address, addressType INTERNAL, purpose GCE_ENDPOINT,
  subnetwork, status RESERVING | RESERVED | IN_USE, users[]. Forwarding rules: kind
  compute#forwardingRule, IPAddress (given as an IP or an address URL, answered as the IP),
  network, target (the service attachment URL), pscConnectionId, pscConnectionStatus (PENDING,
  ACCEPTED, REJECTED, CLOSED, NEEDS_ATTENTION). Operations: kind compute#operation, name,
  operationType, targetLink, targetId, status PENDING | RUNNING | DONE, progress, insertTime,
  startTime, endTime, selfLink, region, error.errors[] {code, message}, httpErrorStatusCode,
  httpErrorMessage. Self links use https://www.googleapis.com/compute/v1/, as the real API's do.
- A PSC endpoint's forwarding rule has an empty loadBalancingScheme ("Must be the empty string
  for a PSC endpoint. Supplying any load balancing scheme - even INTERNAL - is rejected by the
  API", public Terraform modules for google_compute_forwarding_rule with a service attachment
  target), and its pscConnectionStatus reads ACCEPTED once the service attachment accepts it
  (https://cloud.google.com/vertex-ai/docs/predictions/private-service-connect, "Create a
  forwarding rule"); CLOSED once the attachment is gone ("If all models are undeployed ...
  the service attachment might be deleted ... if it's CLOSED, recreate the forwarding rule").
  A project outside the endpoint's projectAllowlist is REJECTED.
- regionOperations.wait: "Waits for the specified Operation resource to return as DONE or for
  the request to approach the 2 minute deadline", answering the operation, done or not
  (https://cloud.google.com/compute/docs/reference/rest/v1/regionOperations/wait).
- Errors (`ComputeError`): {"error": {"code", "message", "errors": [{"message", "domain":
  "global", "reason"}]}}, worded as public reports quote them: 409 "The resource
  'projects/P/regions/R/addresses/X' already exists" (alreadyExists), 404 "The resource '...'
  was not found" (notFound), 400 "The address resource '...' is already being used by '...'"
  (resourceInUseByAnotherResource), 400 "Invalid value for field 'resource.name': ..." (invalid).
  A second delete while one runs answers 400 resourceNotReady (a guess at the wording). A rule
  whose service attachment does not exist is accepted, and its operation fails with
  RESOURCE_NOT_FOUND (where the real API refuses it, synchronously or in the operation, is not
  documented; the emulator takes the path that exercises operation errors).

Operations are PENDING when created, RUNNING after a quarter of `delay`, DONE after `delay`
(their effect applies then: an address becomes RESERVED, a rule's listener starts, a deleted
resource goes). A timer settles each one on time; every read settles what is due as well, so a
test clock works without timers. Addresses come from a loopback pool (127.0.0.2, 127.0.0.3, ...
in 127.0.0.0/16), skipping IPs where the listener port is taken (`ip_free`).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from modeldrop.local.vertex.resources import Attachment

log = logging.getLogger("modeldrop.vertex")

API = "https://www.googleapis.com/compute/v1/"
NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
NAME_RULE = "(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
PROJECT = re.compile(r"[a-z0-9][-a-z0-9.:]{1,62}")
POOL = ipaddress.ip_network("127.0.0.0/16")
RESERVED_IPS = {ipaddress.ip_address("127.0.0.1")}  # the emulator's own ports live there
DELAY_S = 0.2  # an operation's time from insert to DONE
WAIT_S = 120.0  # regionOperations.wait: "the 2 minute deadline"
EMPTY_LABELS = "42WmSpB8rSM="  # the labelFingerprint of no labels
HTTP_MESSAGES = {400: "BAD REQUEST", 403: "FORBIDDEN", 404: "NOT FOUND", 409: "CONFLICT"}


class ComputeError(Exception):
    """An error as Compute Engine answers it: HTTP status, reason, message."""

    def __init__(self, http_status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.reason = reason
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.http_status,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


def invalid_field(field_name: str, value: Any, why: str) -> ComputeError:
    return ComputeError(
        400, "invalid", f"Invalid value for field '{field_name}': {str(value)[:200]!r}. {why}"
    )


def not_found(path: str) -> ComputeError:
    return ComputeError(404, "notFound", f"The resource '{path}' was not found")


def already_exists(path: str) -> ComputeError:
    return ComputeError(409, "alreadyExists", f"The resource '{path}' already exists")


def not_ready(path: str) -> ComputeError:
    return ComputeError(400, "resourceNotReady", f"The resource '{path}' is not ready")


def in_use(kind: str, path: str, user: str) -> ComputeError:
    return ComputeError(
        400,
        "resourceInUseByAnotherResource",
        f"The {kind} resource '{path}' is already being used by '{user}'",
    )


class Listeners(Protocol):
    """What serves an accepted PSC endpoint: a listener on its IP (`psc.PscListeners`)."""

    def start(self, ip: str, attachment: Attachment) -> int:
        """Listen on `ip` for the attachment's endpoint; a token for `stop`; OSError."""
        ...

    def stop(self, ip: str, token: int | None = None) -> None:
        """Stop the listener on `ip` (only the one `token` started, when given)."""
        ...


def _timestamp() -> str:
    """RFC 3339 with milliseconds and an offset, as Compute Engine writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _id() -> str:
    return str(10**18 + secrets.randbelow(8 * 10**18))


def _region_path(project: str, region: str) -> str:
    return f"projects/{project}/regions/{region}"


def _relative(reference: str) -> str:
    """A resource reference without the API prefix: projects/..., regions/..., global/..."""
    for prefix in (
        "https://www.googleapis.com/compute/",
        "https://compute.googleapis.com/compute/",
    ):
        if reference.startswith(prefix):
            reference = reference[len(prefix) :].split("/", 1)[-1]  # drop the version
    return reference.lstrip("/")


def regional_reference(
    reference: Any, project: str, region: str, collection: str, field_name: str
) -> str:
    """A regional resource reference (a name, a partial path or a URL) as its path,
    projects/P/regions/R/COLLECTION/NAME; 400 when malformed or in another region."""
    if not isinstance(reference, str) or not reference:
        raise invalid_field(field_name, reference, f"A {collection} reference is required.")
    path = _relative(reference)
    if "/" not in path:
        path = f"{_region_path(project, region)}/{collection}/{path}"
    elif path.startswith("regions/"):
        path = f"projects/{project}/{path}"
    parts = path.split("/")
    if not (
        len(parts) == 6
        and parts[0] == "projects"
        and parts[2] == "regions"
        and parts[4] == collection
        and NAME.fullmatch(parts[5])
    ):
        raise invalid_field(
            field_name, reference, f"Expected projects/PROJECT/regions/REGION/{collection}/NAME."
        )
    if parts[3] != region:
        raise invalid_field(
            field_name, reference, f"The {collection} must be in region '{region}'."
        )
    return path


def network_reference(reference: Any, project: str) -> str:
    """A network reference (a name, global/networks/N, a path or a URL) as its path."""
    if reference is None or reference == "":
        reference = "default"
    if not isinstance(reference, str):
        raise invalid_field("resource.network", reference, "A network reference is expected.")
    path = _relative(reference)
    if "/" not in path:
        path = f"projects/{project}/global/networks/{path}"
    elif path.startswith("global/"):
        path = f"projects/{project}/{path}"
    parts = path.split("/")
    if not (
        len(parts) == 5
        and parts[0] == "projects"
        and parts[2:4] == ["global", "networks"]
        and NAME.fullmatch(parts[4])
    ):
        raise invalid_field(
            "resource.network", reference, "Expected projects/PROJECT/global/networks/NAME."
        )
    return path


@dataclass
class Address:
    project: str
    region: str
    name: str
    ip: str
    subnetwork: str  # path
    description: str
    id: str = field(default_factory=_id)
    created: str = field(default_factory=_timestamp)
    reserved: bool = False  # its insert operation is done
    deleting: bool = False
    users: list[str] = field(default_factory=list)  # forwarding rule paths

    @property
    def path(self) -> str:
        return f"{_region_path(self.project, self.region)}/addresses/{self.name}"

    def to_json(self) -> dict[str, Any]:
        status = "RESERVING" if not self.reserved else "IN_USE" if self.users else "RESERVED"
        body: dict[str, Any] = {
            "kind": "compute#address",
            "id": self.id,
            "creationTimestamp": self.created,
            "name": self.name,
            "address": self.ip,
            "status": status,
            "region": API + _region_path(self.project, self.region),
            "selfLink": API + self.path,
            "networkTier": "PREMIUM",
            "labelFingerprint": EMPTY_LABELS,
            "addressType": "INTERNAL",
            "purpose": "GCE_ENDPOINT",
            "subnetwork": API + self.subnetwork,
        }
        if self.description:
            body["description"] = self.description
        if self.users:
            body["users"] = [API + user for user in self.users]
        return body


@dataclass
class ForwardingRule:
    project: str
    region: str
    name: str
    ip: str
    address: str  # the address path it uses
    network: str  # path
    target: str  # service attachment path
    description: str
    id: str = field(default_factory=_id)
    created: str = field(default_factory=_timestamp)
    psc_connection_id: str = field(default_factory=lambda: str(10**10 + secrets.randbelow(10**11)))
    fingerprint: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(8)).decode()
    )
    ready: bool = False  # its insert operation is done
    rejected: bool = False  # the attachment refused the project
    listening: bool = False
    listener: int | None = None  # the token of its listener
    deleting: bool = False

    @property
    def path(self) -> str:
        return f"{_region_path(self.project, self.region)}/forwardingRules/{self.name}"

    def to_json(self, status: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "compute#forwardingRule",
            "id": self.id,
            "creationTimestamp": self.created,
            "name": self.name,
            "region": API + _region_path(self.project, self.region),
            "IPAddress": self.ip,
            "target": API + self.target,
            "selfLink": API + self.path,
            "network": API + self.network,
            "networkTier": "PREMIUM",
            "labelFingerprint": EMPTY_LABELS,
            "fingerprint": self.fingerprint,
            "pscConnectionId": self.psc_connection_id,
            "pscConnectionStatus": status,
        }
        if self.description:
            body["description"] = self.description
        return body


@dataclass
class Operation:
    project: str
    region: str
    type: str  # insert | delete
    target: str  # path of the resource it changes
    target_id: str
    created: float  # clock
    due: float  # clock
    effect: Callable[[], tuple[int, str, str] | None]  # an error (HTTP, code, message) or None
    name: str = field(
        default_factory=lambda: (
            f"operation-{int(time.time() * 1000)}-{secrets.token_hex(7)[:13]}-"
            f"{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        )
    )
    id: str = field(default_factory=_id)
    insert_time: str = field(default_factory=_timestamp)
    end_time: str = ""
    done: bool = False
    error: tuple[int, str, str] | None = None

    @property
    def path(self) -> str:
        return f"{_region_path(self.project, self.region)}/operations/{self.name}"

    def to_json(self, now: float) -> dict[str, Any]:
        if self.done:
            status = "DONE"
        else:
            status = "PENDING" if now - self.created < (self.due - self.created) / 4 else "RUNNING"
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self.id,
            "name": self.name,
            "operationType": self.type,
            "targetLink": API + self.target,
            "targetId": self.target_id,
            "status": status,
            "user": "emulator@modeldrop.local",
            "progress": 100 if self.done else 0,
            "insertTime": self.insert_time,
            "selfLink": API + self.path,
            "region": API + _region_path(self.project, self.region),
        }
        if status != "PENDING":
            body["startTime"] = self.insert_time
        if self.done:
            body["endTime"] = self.end_time
        if self.error is not None:
            http, code, message = self.error
            body["error"] = {"errors": [{"code": code, "message": message}]}
            body["httpErrorStatusCode"] = http
            body["httpErrorMessage"] = HTTP_MESSAGES.get(http, "ERROR")
        return body


class Compute:
    """Addresses, forwarding rules and region operations; thread-safe.

    `attachments` looks a service attachment path up (the Vertex registry's live ones);
    `listeners` serves accepted PSC endpoints (attach it with `attach`); `ip_free(ip)` says
    whether an IP of the pool can take a listener; `delay` is an operation's time to DONE
    (0: done in the answer to the call); `clock` reads seconds; `timers` False leaves settling
    to reads (tests moving a clock)."""

    def __init__(
        self,
        attachments: Callable[[str], Attachment | None],
        listeners: Listeners | None = None,
        delay: float = DELAY_S,
        clock: Callable[[], float] = time.monotonic,
        timers: bool = True,
        ip_free: Callable[[str], bool] = lambda ip: True,
    ) -> None:
        self._attachments = attachments
        self.listeners = listeners
        self.delay = delay
        self.clock = clock
        self.timers = timers
        self.ip_free = ip_free
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._addresses: dict[str, Address] = {}  # path -> address
        self._rules: dict[str, ForwardingRule] = {}  # path -> rule
        self._operations: dict[str, Operation] = {}  # path -> operation
        self._ips: set[str] = set()
        self._closed = False

    def attach(self, listeners: Listeners) -> None:
        self.listeners = listeners

    # addresses
    def insert_address(self, project: str, region: str, body: Any) -> dict[str, Any]:
        _check_location(project, region)
        body = _resource(body)
        name = _name(body)
        kind = body.get("addressType", "EXTERNAL")
        if kind != "INTERNAL":
            raise invalid_field(
                "resource.addressType",
                kind,
                "The emulator reserves INTERNAL addresses only (a PSC endpoint's address); "
                "set addressType INTERNAL and a subnetwork.",
            )
        purpose = body.get("purpose", "GCE_ENDPOINT")
        if purpose != "GCE_ENDPOINT":
            raise invalid_field(
                "resource.purpose", purpose, "A regional PSC endpoint address is GCE_ENDPOINT."
            )
        subnetwork = regional_reference(
            body.get("subnetwork"), project, region, "subnetworks", "resource.subnetwork"
        )
        with self._lock:
            self._settle()
            path = f"{_region_path(project, region)}/addresses/{name}"
            if path in self._addresses:
                raise already_exists(path)
            ip = self._allocate(body.get("address"))
            address = Address(
                project, region, name, ip, subnetwork, str(body.get("description") or "")
            )
            self._addresses[path] = address
            self._ips.add(ip)

            def reserve() -> None:
                address.reserved = True

            return self._start(project, region, "insert", path, address.id, _ok(reserve))

    def get_address(self, project: str, region: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            return self._address(project, region, name).to_json()

    def list_addresses(self, project: str, region: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            prefix = f"{_region_path(project, region)}/addresses/"
            items = [a.to_json() for p, a in self._addresses.items() if p.startswith(prefix)]
        return _listing("compute#addressList", project, region, "addresses", items)

    def delete_address(self, project: str, region: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            address = self._address(project, region, name)
            if address.deleting or not address.reserved:
                raise not_ready(address.path)
            if address.users:
                raise in_use("address", address.path, address.users[0])
            address.deleting = True

            def release() -> None:
                self._addresses.pop(address.path, None)
                self._ips.discard(address.ip)

            return self._start(project, region, "delete", address.path, address.id, _ok(release))

    def _address(self, project: str, region: str, name: str) -> Address:
        path = f"{_region_path(project, region)}/addresses/{name}"
        if path not in self._addresses:
            raise not_found(path)
        return self._addresses[path]

    def _allocate(self, wanted: Any) -> str:
        """An IP of the pool for a new address: the one asked for, or the lowest free one."""
        if wanted not in (None, ""):
            try:
                ip = ipaddress.ip_address(str(wanted))
            except ValueError:
                raise invalid_field("resource.address", wanted, "Not an IPv4 address.") from None
            if ip not in POOL or ip in RESERVED_IPS or ip in (POOL[0], POOL[-1]):
                raise invalid_field(
                    "resource.address",
                    wanted,
                    f"The emulator's subnetworks are {POOL} (but 127.0.0.1); pick an IP there or "
                    "leave address out.",
                )
            if str(ip) in self._ips or not self.ip_free(str(ip)):
                raise ComputeError(
                    400,
                    "ipInUseByAnotherResource",  # a guess at the reason's name
                    f"IP '{ip}' is already being used by another resource.",
                )
            return str(ip)
        for candidate in _pool():
            if candidate not in self._ips and self.ip_free(candidate):
                return candidate
        raise ComputeError(
            400, "ipSpaceExhausted", f"The emulator's address pool {POOL} has no free IP."
        )

    # forwarding rules
    def insert_forwarding_rule(self, project: str, region: str, body: Any) -> dict[str, Any]:
        _check_location(project, region)
        body = _resource(body)
        name = _name(body)
        scheme = body.get("loadBalancingScheme", "")
        if scheme not in ("", None):
            raise invalid_field(
                "resource.loadBalancingScheme",
                scheme,
                "A Private Service Connect forwarding rule to a service attachment has an empty "
                "loadBalancingScheme.",
            )
        target = body.get("target")
        if isinstance(target, str) and "/serviceAttachments/" not in target:
            raise invalid_field(
                "resource.target",
                target,
                "The emulator's forwarding rules target service attachments only "
                "(projects/P/regions/R/serviceAttachments/NAME).",
            )
        target = regional_reference(
            target, project, region, "serviceAttachments", "resource.target"
        )
        network = network_reference(body.get("network"), project)
        with self._lock:
            self._settle()
            path = f"{_region_path(project, region)}/forwardingRules/{name}"
            if path in self._rules:
                raise already_exists(path)
            address = self._rule_address(project, region, body.get("IPAddress"))
            if address.users:
                raise in_use("address", address.path, address.users[0])
            if not address.reserved or address.deleting:
                raise not_ready(address.path)
            rule = ForwardingRule(
                project,
                region,
                name,
                address.ip,
                address.path,
                network,
                target,
                str(body.get("description") or ""),
            )
            self._rules[path] = rule
            address.users.append(path)
            return self._start(
                project, region, "insert", path, rule.id, lambda: self._connect(rule)
            )

    def get_forwarding_rule(self, project: str, region: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            rule = self._rule(project, region, name)
            return rule.to_json(self._status(rule))

    def list_forwarding_rules(self, project: str, region: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            prefix = f"{_region_path(project, region)}/forwardingRules/"
            items = [
                r.to_json(self._status(r)) for p, r in self._rules.items() if p.startswith(prefix)
            ]
        return _listing("compute#forwardingRuleList", project, region, "forwardingRules", items)

    def delete_forwarding_rule(self, project: str, region: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            rule = self._rule(project, region, name)
            if rule.deleting or not rule.ready:
                raise not_ready(rule.path)
            rule.deleting = True
            return self._start(
                project, region, "delete", rule.path, rule.id, _ok(lambda: self._remove(rule))
            )

    def _rule(self, project: str, region: str, name: str) -> ForwardingRule:
        path = f"{_region_path(project, region)}/forwardingRules/{name}"
        if path not in self._rules:
            raise not_found(path)
        return self._rules[path]

    def _rule_address(self, project: str, region: str, reference: Any) -> Address:
        """The reserved address a rule's IPAddress names, by IP or by reference."""
        if not isinstance(reference, str) or not reference:
            raise invalid_field(
                "resource.IPAddress",
                reference,
                "A Private Service Connect endpoint needs the IP or the URL of an internal "
                "address reserved in its region.",
            )
        try:
            ipaddress.ip_address(reference)
        except ValueError:
            path = regional_reference(reference, project, region, "addresses", "resource.IPAddress")
            if path not in self._addresses:
                raise not_found(path) from None
            return self._addresses[path]
        prefix = f"{_region_path(project, region)}/addresses/"
        for path, address in self._addresses.items():
            if address.ip == reference and path.startswith(prefix):
                return address
        raise invalid_field(
            "resource.IPAddress",
            reference,
            f"No internal address of {_region_path(project, region)} has this IP; reserve one "
            "first (addresses.insert).",
        )

    def _status(self, rule: ForwardingRule) -> str:
        """pscConnectionStatus: PENDING until created, REJECTED for a project outside the
        allowlist, CLOSED once the service attachment is gone, else ACCEPTED."""
        if not rule.ready:
            return "PENDING"
        if rule.rejected:
            return "REJECTED"
        if not rule.listening or self._attachments(rule.target) is None:
            return "CLOSED"
        return "ACCEPTED"

    def _connect(self, rule: ForwardingRule) -> tuple[int, str, str] | None:
        """The effect of a rule's insert: the attachment accepts it (its listener starts) or
        rejects it; an unknown attachment fails the operation and the rule goes."""
        attachment = self._attachments(rule.target)
        if attachment is None:
            self._remove(rule)
            return 404, "RESOURCE_NOT_FOUND", f"The resource '{rule.target}' was not found"
        rule.ready = True
        if rule.project not in attachment.project_allowlist:
            rule.rejected = True  # the rule stays, and serves nothing
            log.info("psc: %s rejected (project not in %s)", rule.path, attachment.endpoint)
            return None
        if self.listeners is not None:
            try:
                rule.listener = self.listeners.start(rule.ip, attachment)
            except OSError as exc:
                self._remove(rule)
                return 503, "RESOURCE_NOT_READY", f"The emulator cannot listen on {rule.ip}: {exc}"
        rule.listening = True
        log.info("psc: %s -> %s on %s", rule.path, attachment.endpoint, rule.ip)
        return None

    def _remove(self, rule: ForwardingRule) -> None:
        self._rules.pop(rule.path, None)
        address = self._addresses.get(rule.address)
        if address is not None and rule.path in address.users:
            address.users.remove(rule.path)
        if rule.listening:
            rule.listening = False
            self._stop_listener(rule)

    def attachment_closed(self, attachment: str) -> None:
        """A service attachment went away: its rules' listeners stop (the rules read CLOSED)."""
        with self._lock:
            for rule in self._rules.values():
                if rule.target == attachment and rule.listening:
                    rule.listening = False
                    self._stop_listener(rule)
                    log.info("psc: %s closed (service attachment gone)", rule.path)

    def _stop_listener(self, rule: ForwardingRule) -> None:
        """Stop a rule's listener without holding the lock while its server shuts down (the
        token keeps a late stop from ending a newer listener on the same IP)."""
        listeners = self.listeners
        if listeners is not None:
            args = (rule.ip, rule.listener)
            threading.Thread(target=listeners.stop, args=args, daemon=True).start()

    # operations
    def get_operation(self, project: str, region: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            return self._operation(project, region, name).to_json(self.clock())

    def wait_operation(
        self, project: str, region: str, name: str, timeout: float = WAIT_S
    ) -> dict[str, Any]:
        """The operation once DONE, or as it stands after `timeout` seconds (real clock)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                self._settle()
                operation = self._operation(project, region, name)
                left = deadline - time.monotonic()
                if operation.done or left <= 0:
                    return operation.to_json(self.clock())
                until_due = max(operation.due - self.clock(), 0.01)
                self._settled.wait(min(left, until_due))

    def _operation(self, project: str, region: str, name: str) -> Operation:
        path = f"{_region_path(project, region)}/operations/{name}"
        if path not in self._operations:
            raise not_found(path)
        return self._operations[path]

    def _start(
        self,
        project: str,
        region: str,
        kind: str,
        target: str,
        target_id: str,
        effect: Callable[[], tuple[int, str, str] | None],
    ) -> dict[str, Any]:
        """A new operation (lock held); its JSON as the insert or delete answers it."""
        now = self.clock()
        operation = Operation(
            project, region, kind, target, target_id, now, now + self.delay, effect
        )
        self._operations[operation.path] = operation
        if self.delay <= 0:
            self._settle()
        elif self.timers:
            timer = threading.Timer(self.delay, self.settle)
            timer.daemon = True
            timer.start()
        return operation.to_json(now)

    def settle(self) -> None:
        """Complete every operation that is due (in the order they were made)."""
        with self._lock:
            self._settle()

    def _settle(self) -> None:
        if self._closed:
            return
        now = self.clock()
        finished = False
        for operation in self._operations.values():
            if not operation.done and operation.due <= now:
                try:
                    operation.error = operation.effect()
                except Exception as exc:  # an emulator bug: the operation says so
                    log.exception("compute operation %s failed", operation.name)
                    operation.error = (500, "INTERNAL_ERROR", f"Internal error: {exc!r}")
                operation.done = True
                operation.end_time = _timestamp()
                finished = True
        if finished:
            self._settled.notify_all()

    # the emulator
    def snapshot(self) -> dict[str, Any]:
        """Addresses, forwarding rules (REST JSON) and the listeners (for /emulator/state)."""
        with self._lock:
            self._settle()
            rules = list(self._rules.values())
            return {
                "addresses": [a.to_json() for a in self._addresses.values()],
                "forwardingRules": [r.to_json(self._status(r)) for r in rules],
                "psc_listeners": [
                    {"ip": r.ip, "forwarding_rule": r.path, "service_attachment": r.target}
                    for r in rules
                    if r.listening
                ],
                "compute_operations": sum(1 for o in self._operations.values() if not o.done),
            }

    def close(self) -> None:
        """Stop settling; every listener stops."""
        with self._lock:
            self._closed = True
            listening = [(r.ip, r.listener) for r in self._rules.values() if r.listening]
            for rule in self._rules.values():
                rule.listening = False
        if self.listeners is not None:
            for ip, token in listening:
                self.listeners.stop(ip, token)


def _ok(action: Callable[[], None]) -> Callable[[], tuple[int, str, str] | None]:
    def effect() -> None:
        action()

    return effect


def _pool() -> Iterator[str]:
    for ip in POOL.hosts():
        if ip not in RESERVED_IPS and ip.packed[-1] not in (0, 255):
            yield str(ip)


def _check_location(project: str, region: str) -> None:
    if not PROJECT.fullmatch(project):
        raise invalid_field("project", project, "Must be a project ID or number.")
    if not REGION.fullmatch(region):
        raise ComputeError(
            404, "notFound", f"The resource 'projects/{project}/regions/{region}' was not found"
        )


def _resource(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ComputeError(400, "parseError", "Invalid JSON payload received: expected an object.")
    return body


def _name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise invalid_field("resource.name", name, f"Must be a match of regex '{NAME_RULE}'")
    return name


def _listing(
    kind: str, project: str, region: str, collection: str, items: list[Any]
) -> dict[str, Any]:
    path = f"{_region_path(project, region)}/{collection}"
    return {"kind": kind, "id": path, "items": items, "selfLink": API + path}


# What each route needs, as a 403 names it ("Required 'PERMISSION' permission for 'RESOURCE'").
PERMISSIONS = {
    ("addresses", "insert"): "compute.addresses.createInternal",
    ("addresses", "get"): "compute.addresses.get",
    ("addresses", "list"): "compute.addresses.list",
    ("addresses", "delete"): "compute.addresses.deleteInternal",
    ("forwardingRules", "insert"): "compute.forwardingRules.pscCreate",
    ("forwardingRules", "get"): "compute.forwardingRules.get",
    ("forwardingRules", "list"): "compute.forwardingRules.list",
    ("forwardingRules", "delete"): "compute.forwardingRules.pscDelete",
    ("operations", "get"): "compute.regionOperations.get",
    ("operations", "wait"): "compute.regionOperations.get",
}


def fault_error(status: int, collection: str, method: str, resource: str) -> ComputeError:
    """An injected fault (the "compute" fault route) as Compute Engine words it."""
    if status == 403:
        permission = PERMISSIONS.get((collection, method), "compute.projects.get")
        return ComputeError(
            403, "forbidden", f"Required '{permission}' permission for '{resource}'"
        )
    if status == 429:
        return ComputeError(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
            "'compute.googleapis.com'.",
        )
    words = {
        400: ("invalid", f"Invalid value for field 'resource': '{resource}'. (injected fault)"),
        404: ("notFound", f"The resource '{resource}' was not found"),
        409: ("alreadyExists", f"The resource '{resource}' already exists"),
        500: ("backendError", "Internal error. Please try again or contact Google Support."),
        503: ("backendError", "The service is currently unavailable."),
        504: ("backendError", "Deadline exceeded."),
    }
    reason, message = words.get(status, ("backendError", f"Error {status}."))
    return ComputeError(status, reason, message)
