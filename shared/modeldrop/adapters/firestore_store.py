"""Deployment records in Firestore, guarded by preconditions instead of transactions.

One document per deployment id in a collection (default `deployments`). `create` is
create-if-absent and `replace` is update-if-unchanged: the etag is the document's update time
(RFC 3339, nanosecond precision), sent back as a `last_update_time` precondition. No
transactions: the Firestore emulator stalls when many of them contend for one document.

Document layout: datetimes are timestamps, `state` a string, `history` a list of maps
{state, at, note}, `validation`/`machine`/`overrides`/`error`/`preflight`/`placement`/
`smoke_test`/`blocked`/`private_endpoint` maps,
`candidates` and `attempts` lists of maps. Firestore forbids an array
directly inside an array, so such an inner list is stored as the map {"_md_array": [...]} and
unwrapped on reading.

Model names' serving pointers (domain.revisions.ModelPointer) live in a second collection,
`<collection>-models`, one document per name {name, serving, previous, changed_at}; its id is
a digest of the name (a name may be anything a folder's name can be), read by id only.

Ids and model names outside `modeldrop.api.keys` are never sent to Firestore (it would refuse
them): such a record cannot exist, so `get`, `list` and `latest_for_model` find nothing.

Composite indexes production needs on the collection (`__name__` follows implicitly, in the
direction of the last field):
- state ASC, created_at DESC: `list(states=...)`
- model ASC, created_at DESC: `list(model=...)`
- model ASC, state ASC, created_at DESC: `list(states=..., model=...)`
- model ASC, revision DESC, created_at DESC: `latest_for_model()`
Exempting `validation`, `history`, `overrides`, `machine`, `error`, `candidates`, `preflight`,
`placement`, `attempts`, `smoke_test` and `blocked` from single-field indexing is advisable:
nothing queries them and a verdict with many findings makes many entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.api_core.exceptions import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from modeldrop.api.keys import valid_id, valid_name
from modeldrop.domain.deployment import Deployment, State, Transition
from modeldrop.domain.findings import excerpt
from modeldrop.domain.revisions import ModelPointer
from modeldrop.errors import UsageError
from modeldrop.service.ports import RecordTooLarge

ARRAY_KEY = "_md_array"  # wraps a list stored directly inside a list
MAX_PAGE = 1000
_FIELDS = {f.name for f in fields(Deployment)} - {"etag"}


class FirestoreDeploymentStore:
    """The DeploymentStore port on a Firestore collection."""

    def __init__(self, client: firestore.Client, collection: str = "deployments") -> None:
        self._client = client
        self._collection = client.collection(collection)
        self._pointers = client.collection(f"{collection}-models")

    def create(self, deployment: Deployment) -> bool:
        """Store a new record; False (and nothing written) when the id already exists."""
        try:
            self._collection.document(deployment.id).create(to_document(deployment))
        except AlreadyExists:
            return False
        except InvalidArgument as exc:
            raise _refused(exc) from exc
        return True

    def get(self, deployment_id: str) -> Deployment | None:
        """The record with its etag set, or None (also for an id Firestore cannot hold)."""
        if not valid_id(deployment_id):
            return None
        snapshot = self._collection.document(deployment_id).get()
        if not snapshot.exists:
            return None
        return _from_snapshot(snapshot)

    def replace(self, deployment: Deployment) -> Deployment | None:
        """Write every field if the stored record still has `deployment.etag`, else None."""
        if deployment.etag is None:
            raise ValueError(f"deployment {deployment.id} has no etag: read it with get() first")
        option = self._client.write_option(
            last_update_time=DatetimeWithNanoseconds.from_rfc3339(deployment.etag)
        )
        try:
            result = self._collection.document(deployment.id).update(
                to_document(deployment), option=option
            )
        except (FailedPrecondition, NotFound):  # changed since read, or deleted
            return None
        except InvalidArgument as exc:
            raise _refused(exc) from exc
        return replace(deployment, etag=result.update_time.rfc3339())

    def list_page(
        self,
        states: tuple[State, ...] = (),
        model: str | None = None,
        limit: int = 50,
        page_token: str | None = None,
    ) -> tuple[list[Deployment], str | None]:
        """Records newest first (created_at, then id, descending), filtered, one page."""
        if not 1 <= limit <= MAX_PAGE:
            raise UsageError(f"limit must be between 1 and {MAX_PAGE}, not {limit}.")
        query: Any = self._collection
        if states:
            # each state once: Firestore's "in" takes at most 30 values
            values = sorted({str(s) for s in states})
            query = query.where(filter=FieldFilter("state", "in", values))
        if model is not None:
            if not valid_name(model):
                return [], None
            query = query.where(filter=FieldFilter("model", "==", model))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
            FieldPath.document_id(), direction=firestore.Query.DESCENDING
        )
        if page_token:
            created_at, last_id = _decode_token(page_token)
            query = query.start_after({"created_at": created_at, FieldPath.document_id(): last_id})
        snapshots = list(query.limit(limit + 1).stream())
        page = [_from_snapshot(snapshot) for snapshot in snapshots[:limit]]
        next_token = _encode_token(page[-1]) if len(snapshots) > limit else None
        return page, next_token

    def pending_notifications(self, limit: int = 100) -> list[Deployment]:
        """Records whose last transition has not been confirmed as published."""
        query = self._collection.where(filter=FieldFilter("event_pending", "==", True))
        return [_from_snapshot(snapshot) for snapshot in query.limit(limit).stream()]

    def latest_for_model(self, model: str) -> Deployment | None:
        """The highest revision of a model name (the newest created among equal revisions)."""
        if not valid_name(model):
            return None
        query = (
            self._collection.where(filter=FieldFilter("model", "==", model))
            .order_by("revision", direction=firestore.Query.DESCENDING)
            .order_by("created_at", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snapshot in query.stream():
            return _from_snapshot(snapshot)
        return None

    def get_pointer(self, model: str) -> ModelPointer | None:
        """The model name's serving pointer with its etag set, or None."""
        if not valid_name(model):
            return None
        snapshot = self._pointers.document(pointer_id(model)).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        return ModelPointer(
            name=data["name"],
            serving=data["serving"],
            previous=data.get("previous"),
            changed_at=_decode(data["changed_at"]),
            etag=snapshot.update_time.rfc3339(),
        )

    def put_pointer(self, pointer: ModelPointer) -> ModelPointer | None:
        """Create (etag None) or replace-if-unchanged; None when someone got there first."""
        document = self._pointers.document(pointer_id(pointer.name))
        try:
            if pointer.etag is None:
                result = document.create(pointer.as_dict())
            else:
                option = self._client.write_option(
                    last_update_time=DatetimeWithNanoseconds.from_rfc3339(pointer.etag)
                )
                result = document.update(pointer.as_dict(), option=option)
        except (AlreadyExists, FailedPrecondition, NotFound):
            return None
        return replace(pointer, etag=result.update_time.rfc3339())


def pointer_id(model: str) -> str:
    """The document id of a model name's pointer: a digest, valid whatever the name holds."""
    return hashlib.sha256(model.encode()).hexdigest()[:40]


def to_document(deployment: Deployment) -> dict[str, Any]:
    """The Firestore document of a record: every field, None included, no etag, plus the
    derived `event_pending` flag that reconcile queries."""
    return _encode({**deployment.as_dict(), "event_pending": deployment.event_pending})


def from_document(data: dict[str, Any], etag: str) -> Deployment:
    """The record stored in a Firestore document (fields it lacks take their defaults)."""
    values = {k: v for k, v in _decode(data).items() if k in _FIELDS}
    values["state"] = State(values["state"])
    values["history"] = tuple(
        Transition(State(t["state"]), t["at"], t.get("note", ""), t.get("event"))
        for t in values.get("history") or ()
    )
    values["overrides"] = values.get("overrides") or {}
    values["attempts"] = tuple(values.get("attempts") or ())
    if values.get("candidates") is not None:
        values["candidates"] = tuple(values["candidates"])
    return Deployment(**values, etag=etag)


def _from_snapshot(snapshot: DocumentSnapshot) -> Deployment:
    return from_document(snapshot.to_dict() or {}, snapshot.update_time.rfc3339())


def _encode(value: Any, in_array: bool = False) -> Any:
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [_encode(item, in_array=True) for item in value]
        return {ARRAY_KEY: items} if in_array else items
    return value


def _decode(value: Any, in_array: bool = False) -> Any:
    if isinstance(value, dict):
        if in_array and value.keys() == {ARRAY_KEY}:
            return _decode(value[ARRAY_KEY])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, in_array=True) for item in value]
    if isinstance(value, datetime):  # DatetimeWithNanoseconds -> plain datetime (microseconds)
        return datetime.combine(value.date(), value.timetz())
    return value


def _refused(exc: InvalidArgument) -> RecordTooLarge:
    """Firestore refused a record modeldrop built: in practice its size (1 MiB a document, about
    1 MiB a value; the emulator says 'longer than 1048487 bytes' or 'invalid nested entity')."""
    return RecordTooLarge(
        f"Firestore refused the record: {excerpt(str(exc.message or exc))}",
        "A deployment record must stay under Firestore's 1 MiB document limit; this is a "
        "modeldrop bug if validation produced it: report it with the deployment id.",
    )


def _encode_token(last: Deployment) -> str:
    raw = json.dumps([last.created_at.isoformat(), last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    """The (created_at, id) of a token `_encode_token` made; UsageError for any other text,
    including a well-formed one holding what Firestore would refuse (an id with '/', a time
    that is not UTC)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, last_id = json.loads(raw)
        at = datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError, RecursionError) as exc:
        raise _bad_token() from exc
    if at.utcoffset() != timedelta(0) or not valid_id(last_id):
        raise _bad_token()
    return at, last_id


def _bad_token() -> UsageError:
    return UsageError(
        "Invalid page_token.", "Pass the next_page_token of a previous page unchanged."
    )
