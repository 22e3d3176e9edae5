"""What the exit status of a `modeldrop` command says: one table, printed in `--help` too."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Exit statuses of the commands that talk to the api (`validate` has its own: 0 accepted,
    1 rejected, 2 usage or access error)."""

    OK = 0
    REFUSED = 1  # the api answered an error (its code, message and hint are printed)
    USAGE = 2  # a bad argument, or no api URL
    UNREACHABLE = 3  # the api cannot be reached, or what answered is not the api
    NOT_FOUND = 4  # no such deployment id or model name
    REJECTED = 5  # the deployment is (or ended) REJECTED: its findings say why
    FAILED = 6  # the deployment is (or ended) FAILED: its error says why
    ENDED_OTHERWISE = 7  # a wait ended in another settled state (say UNDEPLOYED, SUPERSEDED)
    TIMEOUT = 8  # --timeout passed before the wait ended
    INTERRUPTED = 130  # Ctrl-C


MEANING = {
    Exit.OK: "ok (show: any state but REJECTED or FAILED; a wait: the state waited for)",
    Exit.REFUSED: "the api refused: its error code, message and hint are printed",
    Exit.USAGE: "usage: a bad argument, or no api URL",
    Exit.UNREACHABLE: "the api cannot be reached (or what answered is not the api)",
    Exit.NOT_FOUND: "not found: no such deployment id or model name",
    Exit.REJECTED: "the deployment is REJECTED (show, status --watch, redeploy)",
    Exit.FAILED: "the deployment is FAILED (show, status --watch, redeploy)",
    Exit.ENDED_OTHERWISE: "a wait ended in another settled state (UNDEPLOYED, SUPERSEDED, ...)",
    Exit.TIMEOUT: "--timeout passed before the wait ended",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
}

STATE_EXITS = {"REJECTED": Exit.REJECTED, "FAILED": Exit.FAILED}


def for_state(state: object, wanted: set[str] | None = None) -> Exit:
    """The exit status for a deployment in `state`: REJECTED and FAILED say so; with `wanted`
    (a wait's goal) any other state outside it is ENDED_OTHERWISE."""
    if isinstance(state, str) and state in STATE_EXITS:
        return STATE_EXITS[state]
    if wanted is not None and state not in wanted:
        return Exit.ENDED_OTHERWISE
    return Exit.OK


def table() -> str:
    """The exit statuses as lines for an epilog."""
    return "\n".join(f"  {int(code):>3}  {text}" for code, text in MEANING.items())
