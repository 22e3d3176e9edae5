"""validate: an object landed in the bucket; decide whether its folder is complete, validate it.

Events arrive at least once and in any order. Every finalize event lists its folder once; the
deployment id derives from the folder's fingerprint, so duplicates collapse onto one record,
and claiming the record (DETECTED -> VALIDATING with a precondition) lets exactly one worker
validate it, from the same listing unless a settle window asks to list again. An index document
is read once per generation per instance (`IndexCache`), not once per event. Whatever the folder
holds, the record ends with a verdict: validation that fails unexpectedly is a rejection, and
storage errors are retried a bounded number of times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modeldrop import catalog, logs
from modeldrop.domain.completion import (
    Completion,
    decide,
    fingerprint,
    folder_of,
    name_problem,
    revision,
)
from modeldrop.domain.deployment import Deployment, State, advance, new_deployment, update
from modeldrop.domain.findings import MachineSpec, Verdict, error, excerpt, internal_error
from modeldrop.domain.folder import FileInfo, Folder
from modeldrop.domain.private_endpoint import private_target
from modeldrop.errors import AccessError
from modeldrop.service.context import Context, describe
from modeldrop.service.records import claim, commit, create, hand_over, retry_later
from modeldrop.validation.architecture import BasePolicy
from modeldrop.validation.private_endpoint import private_network_findings
from modeldrop.validation.validator import validate_folder

log = logs.get("validate")
PRE_DEPLOY = (State.DETECTED, State.VALIDATING, State.VALIDATED)
MAX_INDEX_READS = 8  # index files looked at per listing; a folder normally has one
# gcloud and Vertex AI read these in gs:// URIs as wildcards (*?[]) or an object generation (#)
UNSUPPORTED_NAME_CHARACTERS = "*?[]#"


@dataclass(frozen=True)
class Listing:
    """A folder and one listing of it. As a Folder it answers that listing and reads through
    the folder, so validation does not list again."""

    folder: Folder
    files: list[FileInfo]

    @property
    def location(self) -> str:
        return self.folder.location

    def list_files(self) -> list[FileInfo]:
        return self.files

    def read_range(self, name: str, start: int, length: int) -> bytes:
        return self.folder.read_range(name, start, length)

    def read_tail(self, name: str, length: int) -> bytes:
        return self.folder.read_tail(name, length)


def _snapshot(ctx: Context, folder: Folder) -> tuple[Listing, dict[str, frozenset[str]]]:
    """One listing, and the shards each root-level index names. At most MAX_INDEX_READS index
    files, of at most one index's size limit together, are looked at (each read once per
    generation, see IndexCache); an index not looked at, or not a weight map, names no shard
    (validation says what is wrong with it)."""
    files = folder.list_files()
    rules = catalog.file_rules()
    cache = ctx.index_cache
    budget, taken = rules["limits"]["index_bytes"], 0
    indexes: dict[str, frozenset[str]] = {}
    for f in files:
        if "/" in f.name or not f.name.endswith(rules["index_suffix"]):
            continue
        indexes[f.name] = frozenset()
        if taken < MAX_INDEX_READS and f.size <= budget:
            budget, taken = budget - f.size, taken + 1
            indexes[f.name] = cache.shards(folder, f)
    return Listing(folder, files), indexes


def on_object_finalized(ctx: Context, bucket: str, name: str) -> Deployment | None:
    """Handle one finalize event; returns the deployment it drove, if any. An event that cannot
    concern a model folder (another bucket, outside the root, a name no upload has) is logged
    and ignored."""
    settings = ctx.settings
    problem = f"the bucket is not {settings.bucket}" if bucket != settings.bucket else None
    problem = problem or name_problem(name)
    folder_prefix = None if problem else folder_of(name, settings.root_prefix)
    if folder_prefix is None:
        problem = problem or f"not inside a model folder under {settings.root_prefix}"
        log.info("ignored %s in bucket %s: %s", excerpt(name), excerpt(bucket), problem)
        return None
    uri = f"gs://{bucket}/{folder_prefix}"
    listing, indexes = _snapshot(ctx, ctx.open_folder(uri))
    files, rules = listing.files, catalog.file_rules()
    decision = decide(files, indexes, settings.completion_mode, settings.marker_name, rules)
    if decision.completion is Completion.WAIT:
        log.info("%s not complete: %s", uri, decision.reason, extra={"folder": folder_prefix})
        return None
    now = ctx.clock()
    record = new_deployment(bucket, folder_prefix, fingerprint(files), revision(files), now)
    stored = create(
        ctx,
        update(record, now, lease_expires_at=Deployment.lease_end(now, ctx.settings.lease_seconds)),
    )
    return drive_validation(ctx, stored, listing) if stored else None


def drive_validation(
    ctx: Context, record: Deployment, listing: Listing | None = None
) -> Deployment:
    """Take a DETECTED record, or a VALIDATING one whose claim expired (its worker died, or
    gave it back to be retried), to a verdict; `listing` is the event's, if it has one."""
    if record.state is not State.DETECTED and not (
        record.state is State.VALIDATING and record.lease_expired(ctx.clock())
    ):
        return record
    claimed = claim(ctx, record, State.VALIDATING)
    if claimed is None or claimed.state is not State.VALIDATING:
        return claimed or record
    supersede_older(ctx, claimed)
    return validate(ctx, claimed, listing)


def supersede_older(ctx: Context, record: Deployment) -> None:
    """Older revisions of the same folder that have not started deploying are superseded."""
    older, _ = ctx.store.list_page(states=PRE_DEPLOY, model=record.model, limit=100)
    for other in older:
        if (other.bucket, other.folder) == (record.bucket, record.folder) and (
            other.revision < record.revision
        ):
            commit(ctx, advance(other, State.SUPERSEDED, ctx.clock(), f"superseded by {record.id}"))


def validate(ctx: Context, record: Deployment, listing: Listing | None = None) -> Deployment:
    """Validate a claimed VALIDATING record and record the verdict. Storage errors are retried
    (`retry_later`); a folder that changed while settling is SUPERSEDED."""
    try:
        verdict = _unsupported_name(record.model) or _settled_verdict(ctx, record, listing)
    except AccessError as exc:
        return retry_later(ctx, record, exc)
    if verdict is None:
        note = "the folder changed again before it settled"
        return commit(ctx, advance(record, State.SUPERSEDED, ctx.clock(), note)) or record
    return _record_verdict(ctx, record, verdict)


def _settled_verdict(ctx: Context, record: Deployment, listing: Listing | None) -> Verdict | None:
    """The verdict on the folder once it has been quiet for the settle window since it was
    detected; None when it changed meanwhile. The event's listing is used as it is without a
    settle window; with one, or without a listing, the folder is listed (after the wait).
    Raises only AccessError."""
    settings = ctx.settings
    if listing is None or settings.settle_seconds > 0:
        waited = (ctx.clock() - record.created_at).total_seconds()
        if waited < settings.settle_seconds:
            ctx.sleep(settings.settle_seconds - waited)
        folder = listing.folder if listing else ctx.open_folder(record.gcs_uri)
        listing = Listing(folder, folder.list_files())
    if fingerprint(listing.files) != record.fingerprint:
        return None
    policy, default = BasePolicy(settings.base_policy), settings.default_machine_spec
    machine = MachineSpec(**default) if default else None
    try:
        verdict = validate_folder(listing, policy, machine)
    except AccessError:
        raise
    except Exception as exc:  # validation is bounded; this is its second line of defence
        log.error("validation failed: %s", describe(exc), extra={"deployment_id": record.id})
        return Verdict(findings=(internal_error(exc),))
    target = private_target(
        verdict.overrides,
        settings.project,
        settings.psc_project_allowlist,
        settings.psc_network,
        settings.psc_subnetwork,
    )
    return replace(verdict, findings=(*verdict.findings, *private_network_findings(target)))


def _unsupported_name(model: str) -> Verdict | None:
    """The rejection of a folder name Vertex AI cannot deploy from, or None."""
    found = sorted(set(model) & set(UNSUPPORTED_NAME_CHARACTERS))
    if not found:
        return None
    avoid = " ".join(UNSUPPORTED_NAME_CHARACTERS)
    message = (
        f"The folder name {excerpt(model)} holds {' '.join(found)}: gcloud and Vertex AI read "
        "* ? [ ] in a gs:// URI as wildcards and # as an object generation, so the model cannot "
        "be deployed from this folder."
    )
    hint = f"Rename the folder without {avoid} (spaces and other characters are fine), then "
    hint += "upload it again."
    return Verdict(findings=(error("FOLDER_NAME_UNSUPPORTED", message, None, hint),))


def _record_verdict(ctx: Context, record: Deployment, verdict: Verdict) -> Deployment:
    """VALIDATED (and queued for deploy) or REJECTED with the first error and its hint."""
    now = ctx.clock()
    report = verdict.as_dict()
    if not verdict.accepted:
        first = verdict.errors[0]
        rejected = advance(
            record,
            State.REJECTED,
            now,
            first.code,
            validation=report,
            error={"code": first.code, "message": first.message, "hint": first.hint},
            lease_expires_at=None,
        )
        return commit(ctx, rejected) or record
    machine = verdict.recommended_machine.as_dict() if verdict.recommended_machine else None
    validated = advance(
        record,
        State.VALIDATED,
        now,
        verdict.matched_base or report["architecture"] or "",
        validation=report,
        machine=machine,
        overrides=verdict.overrides,
        error=None,
        lease_expires_at=Deployment.lease_end(now, ctx.settings.lease_seconds),
    )
    written = commit(ctx, validated)
    if written is None or written.state is not State.VALIDATED:
        return written or record
    hand_over(ctx, written)
    return written
