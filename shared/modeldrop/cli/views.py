"""What the api commands print for people: aligned tables and short views of the api's JSON.

Everything shown is bounded and safe for a terminal: long messages are excerpts
(modeldrop.domain.findings.excerpt), table cells are cut to a width, and control characters
(an escape sequence in a model name or a log line) are shown escaped, never sent to the
terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modeldrop.domain.findings import excerpt

MESSAGE_CHARS = 300  # a message, a note, a hint
LOG_CHARS = 2000  # a log line (the api cuts them to 2,000 characters too)
CELL_CHARS = 40  # a table cell


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _escaped(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clean(value: Any, limit: int = MESSAGE_CHARS) -> str:
    """`value` as text fit for a terminal: control characters escaped, an excerpt when long."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return excerpt(text, limit)
    return _escaped(text)


def answer_text(text: Any) -> str:
    """A piece of a model's answer: new lines and tabs kept, other control characters
    escaped."""
    if not isinstance(text, str):
        return ""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def cell(value: Any, width: int = CELL_CHARS) -> str:
    text = _escaped("" if value is None else str(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *rows]:
        padded = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    """3s, 4m, 2h, 5d (a negative span, from clocks apart, is 0s)."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age(value: Any, now: datetime) -> str:
    at = parse_time(value)
    return duration((now - at).total_seconds()) if at else "-"


def money(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"${value:.{digits}f}"


def machine_text(spec: Any) -> str:
    """g2-standard-4 1xNVIDIA_L4"""
    if not isinstance(spec, Mapping):
        return "-"
    text = str(spec.get("machine_type") or "-")
    if spec.get("accelerator_type"):
        text += f" {spec.get('accelerator_count') or 1}x{spec['accelerator_type']}"
    return text


def placement_text(body: Mapping[str, Any]) -> str:
    """region/machine of the deployment's placement (the recommended machine before any)."""
    placement = body.get("placement")
    if isinstance(placement, Mapping):
        spot = " spot" if placement.get("spot") else ""
        return (
            f"{placement.get('region') or '-'}/{machine_text(placement.get('machine_spec'))}{spot}"
        )
    if isinstance(body.get("machine"), Mapping):
        return f"-/{machine_text(body['machine'])}"
    return "-"


def deployments_table(
    deployments: Sequence[Mapping[str, Any]], serving: set[str], now: datetime
) -> str:
    """The `modeldrop list` table; `serving` holds the ids that answer for their model name."""
    if not deployments:
        return "no deployments"
    rows = [
        [
            cell(d.get("id")),
            cell(d.get("model")),
            cell(d.get("revision")),
            cell(d.get("state")),
            "*" if d.get("id") in serving else "",
            cell(placement_text(d), 60),
            money(d.get("hourly_usd")),
            age(d.get("created_at"), now),
        ]
        for d in deployments
    ]
    headers = ["ID", "MODEL", "REVISION", "STATE", "SERVING", "REGION/MACHINE", "$/H", "AGE"]
    return table(headers, rows)


def _history(history: Sequence[Any], now: datetime) -> list[str]:
    """Each transition with the time spent in that state (the last: until now)."""
    entries = [h for h in history if isinstance(h, Mapping)][-50:]
    rows = []
    for i, entry in enumerate(entries):
        at = parse_time(entry.get("at"))
        later = parse_time(entries[i + 1].get("at")) if i + 1 < len(entries) else now
        spent = duration((later - at).total_seconds()) if at and later else "-"
        if i + 1 == len(entries):
            spent = f"{spent}+"
        rows.append(
            [cell(entry.get("at"), 32), cell(entry.get("state")), spent, clean(entry.get("note"))]
        )
    return table(["AT", "STATE", "FOR", "NOTE"], rows).splitlines() if rows else []


def _findings(findings: Sequence[Any]) -> list[str]:
    rows = []
    for f in [f for f in findings if isinstance(f, Mapping)][:100]:
        where = f"{clean(f.get('file'), 120)}: " if f.get("file") else ""
        rows.append([cell(f.get("severity")), cell(f.get("code")), where + clean(f.get("message"))])
        if f.get("hint"):
            rows.append(["", "", f"hint: {clean(f.get('hint'))}"])
    return table(["SEVERITY", "CODE", "MESSAGE"], rows).splitlines() if rows else []


def _smoke(smoke: Any) -> str | None:
    if not isinstance(smoke, Mapping):
        return None
    passed = {True: "passed", False: "failed", None: "pending"}.get(smoke.get("passed"), "?")
    text = f"{passed} ({clean(smoke.get('kind'), 20)}, {smoke.get('tries') or 0} tries"
    if smoke.get("latency_ms") is not None:
        text += f", {smoke['latency_ms']} ms"
    text += ")"
    if smoke.get("excerpt"):
        text += f": {clean(smoke['excerpt'], 120)}"
    if smoke.get("last_error"):
        text += f" last error: {clean(smoke['last_error'])}"
    return text


def show_text(body: Mapping[str, Any], now: datetime) -> str:
    """`modeldrop show`: one deployment (or a model name's newest revision) for people."""
    name = body.get("model")
    serving = body.get("serving", ...)  # only a model's status has it
    head = f"{clean(body.get('id'), 200)}  {clean(body.get('state'), 20)}"
    if serving is not ...:
        head += f"  (newest revision of {clean(name, 200)})"
    lines = [head]

    def field(label: str, value: Any) -> None:
        if value not in (None, "", "-"):
            lines.append(f"  {label:<12}{value}")

    field("model", f"{clean(name, 200)}  revision {clean(body.get('revision'))}")
    if serving is not ...:
        field(
            "serving", clean(serving, 200) if serving else "none (no revision answers for the name)"
        )
    field("folder", clean(body.get("gcs_uri"), 500))
    base = body.get("matched_base")
    validation = body.get("validation") if isinstance(body.get("validation"), Mapping) else {}
    architecture = validation.get("architecture") if validation else None
    if base or architecture:
        field("base", f"{clean(base or 'none matched')} ({clean(architecture)})")
    field("placement", placement_text(body))
    attempts = _items(body.get("attempts"))
    if len(attempts) > 1:
        tried = [
            f"{clean(a.get('region'), 40)}:{clean(a.get('outcome'), 40)}"
            for a in attempts[:20]
            if isinstance(a, Mapping)
        ]
        field("attempts", ", ".join(tried))
    if body.get("hourly_usd") is not None:
        accrued = money(body.get("accrued_usd"), 4)
        field("cost", f"{money(body.get('hourly_usd'), 4)}/h, {accrued} so far (estimate)")
    field("endpoint", clean(body.get("endpoint"), 500))
    field("smoke test", _smoke(body.get("smoke_test")))
    field(
        "created", f"{clean(body.get('created_at'), 40)} ({age(body.get('created_at'), now)} ago)"
    )
    blocked = body.get("blocked")
    if isinstance(blocked, Mapping):
        field("blocked", f"{clean(blocked.get('code'), 60)}: {clean(blocked.get('message'))}")
        field("", f"hint: {clean(blocked.get('hint'))}" if blocked.get("hint") else None)
    error = body.get("error")
    if isinstance(error, Mapping):
        field("error", f"{clean(error.get('code'), 60)}: {clean(error.get('message'))}")
        field("", f"hint: {clean(error.get('hint'))}" if error.get("hint") else None)
        for entry in _items(error.get("logs"))[-20:]:
            text = entry.get("text") if isinstance(entry, Mapping) else entry
            lines.append(f"    | {clean(text)}")
    history = _history(body.get("history") or [], now)
    if history:
        lines.append("  history")
        lines.extend(f"    {line}" for line in history)
    findings = _findings(body.get("findings") or [])
    if findings:
        lines.append("  findings")
        lines.extend(f"    {line}" for line in findings)
    revisions = body.get("revisions")
    if isinstance(revisions, list) and revisions:
        rows = [
            [
                "*" if r.get("id") == serving else "",
                cell(r.get("id")),
                cell(r.get("revision")),
                cell(r.get("state")),
            ]
            for r in revisions
            if isinstance(r, Mapping)
        ]
        lines.append("  revisions (* serving)")
        lines.extend(
            f"    {line}" for line in table(["", "ID", "REVISION", "STATE"], rows).splitlines()
        )
    return "\n".join(lines)


def costs_text(body: Mapping[str, Any]) -> str:
    """`modeldrop costs`: the running deployments, their estimates and the totals."""
    rows = [
        [
            cell(d.get("id")),
            cell(d.get("model")),
            cell(d.get("state")),
            cell(d.get("region")) + (" spot" if d.get("spot") else ""),
            money(d.get("hourly_usd"), 4),
            money(d.get("accrued_usd"), 4),
        ]
        for d in body.get("deployments") or []
        if isinstance(d, Mapping)
    ]
    lines = [
        table(["ID", "MODEL", "STATE", "REGION", "$/H", "ACCRUED"], rows)
        if rows
        else "nothing running"
    ]
    lines.append(
        f"total {money(body.get('total_hourly_usd'), 4)}/h, "
        f"{money(body.get('total_accrued_usd'), 4)} accrued"
        + (" (truncated: more running than listed)" if body.get("truncated") else "")
    )
    if body.get("estimate"):
        lines.append(clean(body["estimate"]))
    return "\n".join(lines)


def log_line(entry: Mapping[str, Any]) -> str:
    return (
        f"{cell(entry.get('at'), 40)}  {cell(entry.get('severity'), 10):<7}  "
        f"{clean(entry.get('text'), LOG_CHARS)}"
    )


def progress_line(body: Mapping[str, Any]) -> str:
    """One state change while waiting: when, the state, the id and the transition's note."""
    history = body.get("history") or []
    last = history[-1] if history and isinstance(history[-1], Mapping) else {}
    at = last.get("at") if last.get("state") == body.get("state") else body.get("updated_at")
    line = f"{cell(at, 40)}  {cell(body.get('state'), 20):<11}  {cell(body.get('id'), 200)}"
    if last.get("note") and last.get("state") == body.get("state"):
        line += f"  {clean(last['note'], 160)}"
    blocked = body.get("blocked")
    if isinstance(blocked, Mapping):
        line += f"  blocked: {clean(blocked.get('code'), 60)}: {clean(blocked.get('message'), 200)}"
    return line


def refusal_text(
    status: int, code: str, message: str, hint: str, details: Mapping[str, Any]
) -> str:
    """An error the api answered, as printed to stderr."""
    lines = [f"modeldrop: the api refused (HTTP {status} {clean(code, 60)}): {clean(message)}"]
    if details.get("state"):
        lines.append(f"  state: {clean(details['state'], 20)}")
    if details.get("upstream_body"):
        lines.append(f"  upstream: {clean(details['upstream_body'])}")
    if hint:
        lines.append(f"  hint: {clean(hint)}")
    return "\n".join(lines)


def now() -> datetime:
    return datetime.now(UTC)
