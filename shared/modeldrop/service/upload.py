"""validate: an object landed in the bucket; decide whether its folder is complete, validate it.

Events arrive at least once and in any order. Every finalize event lists its folder; the
deployment id derives from the folder's fingerprint, so duplicates collapse onto one record,
and claiming the record (DETECTED -> VALIDATING with a precondition) lets exactly one worker
validate it.
"""

from __future__ import annotations

from datetime import timedelta

from modeldrop import catalog, logs
from modeldrop.domain.completion import Completion, decide, fingerprint, folder_of, revision
from modeldrop.domain.deployment import Deployment, State, advance, new_deployment, update
from modeldrop.domain.findings import MachineSpec, Severity
from modeldrop.errors import AccessError
from modeldrop.service.context import Context
from modeldrop.service.records import commit, create
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.folder import FileInfo, Folder
from modeldrop.validation.validator import validate_folder

log = logs.get("upload")
INDEX_LIMIT = 64 * 2**20
PRE_DEPLOY = (State.DETECTED, State.VALIDATING, State.VALIDATED)


def _snapshot(folder: Folder) -> tuple[list[FileInfo], dict[str, bytes]]:
    files = folder.list_files()
    indexes = {
        f.name: folder.read_range(f.name, 0, f.size)
        for f in files
        if "/" not in f.name and f.name.endswith(".index.json") and f.size <= INDEX_LIMIT
    }
    return files, indexes


def on_object_finalized(ctx: Context, bucket: str, name: str) -> Deployment | None:
    """Handle one finalize event; returns the deployment it drove, if any."""
    settings = ctx.settings
    folder_prefix = folder_of(name, settings.root_prefix)
    if folder_prefix is None:
        log.info("ignored %s: not inside a model folder under %s", name, settings.root_prefix)
        return None
    uri = f"gs://{bucket}/{folder_prefix}"
    folder = ctx.open_folder(uri)
    files, indexes = _snapshot(folder)
    rules = catalog.file_rules()
    decision = decide(files, indexes, settings.completion_mode, settings.marker_name, rules)
    if decision.completion is Completion.WAIT:
        log.info("%s not complete: %s", uri, decision.reason, extra={"folder": folder_prefix})
        return None
    now = ctx.clock()
    record = new_deployment(bucket, folder_prefix, fingerprint(files), revision(files), now)
    record = update(record, now, lease_expires_at=now + _lease(ctx) + _settle(ctx))
    stored = create(ctx, record)
    return drive_validation(ctx, stored) if stored else None


def _lease(ctx: Context) -> timedelta:
    return timedelta(seconds=ctx.settings.lease_seconds)


def _settle(ctx: Context) -> timedelta:
    return timedelta(seconds=ctx.settings.settle_seconds)


def drive_validation(ctx: Context, record: Deployment, takeover: bool = False) -> Deployment:
    """Take a DETECTED record (or, with `takeover`, a stale VALIDATING one) to a verdict."""
    if record.state is State.DETECTED:
        if ctx.settings.settle_seconds > 0 and not takeover:
            ctx.sleep(ctx.settings.settle_seconds)
        files, _ = _snapshot(ctx.open_folder(record.gcs_uri))
        if fingerprint(files) != record.fingerprint:
            note = "the folder changed again before it settled"
            return commit(ctx, advance(record, State.SUPERSEDED, ctx.clock(), note)) or record
        now = ctx.clock()
        claim = advance(record, State.VALIDATING, now, lease_expires_at=now + _lease(ctx))
    elif takeover and record.state is State.VALIDATING:
        now = ctx.clock()
        claim = update(record, now, lease_expires_at=now + _lease(ctx))
    else:
        return record
    claimed = commit(ctx, claim)
    if claimed is None:
        return record
    supersede_older(ctx, claimed)
    return validate(ctx, claimed)


def supersede_older(ctx: Context, record: Deployment) -> None:
    """Older revisions of the same folder that have not started deploying are superseded."""
    older, _ = ctx.store.list(states=PRE_DEPLOY, model=record.model, limit=100)
    for other in older:
        if (other.bucket, other.folder) == (record.bucket, record.folder) and (
            other.revision < record.revision
        ):
            commit(ctx, advance(other, State.SUPERSEDED, ctx.clock(), f"superseded by {record.id}"))


def validate(ctx: Context, record: Deployment) -> Deployment:
    """Run validation on a claimed VALIDATING record and record the verdict."""
    default = ctx.settings.default_machine_spec
    try:
        verdict = validate_folder(
            ctx.open_folder(record.gcs_uri),
            BasePolicy(ctx.settings.base_policy),
            MachineSpec(**default) if default else None,
        )
    except AccessError:
        commit(ctx, update(record, ctx.clock(), lease_expires_at=ctx.clock()))
        raise  # the event is redelivered; reconcile also retries after the lease
    now = ctx.clock()
    report = verdict.as_dict()
    if not verdict.accepted:
        first = next(f for f in verdict.findings if f.severity is Severity.ERROR)
        error = {"code": first.code, "message": first.message, "hint": first.hint}
        rejected = advance(
            record, State.REJECTED, now, first.code, validation=report, error=error,
            lease_expires_at=None,
        )  # fmt: skip
        return commit(ctx, rejected) or record
    machine = verdict.recommended_machine.as_dict() if verdict.recommended_machine else None
    validated = advance(
        record, State.VALIDATED, now, verdict.matched_base or report["architecture"] or "",
        validation=report, machine=machine, overrides=verdict.overrides,
        lease_expires_at=now + _lease(ctx),
    )  # fmt: skip
    written = commit(ctx, validated)
    if written is None:
        return record
    hand_over(ctx, written)
    return written


def hand_over(ctx: Context, record: Deployment) -> None:
    """Queue a VALIDATED record for the deploy function (reconcile re-queues if this is lost)."""
    try:
        ctx.queue.publish_validated(record.id)
    except Exception as exc:  # reconcile re-queues VALIDATED records whose lease expired
        log.warning("not queued for deploy yet: %s", exc, extra={"deployment_id": record.id})
