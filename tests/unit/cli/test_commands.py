"""`modeldrop list|show|delete|rollback|redeploy|logs|chat|costs|status|ui` against a real api
(the api function on fakes, over HTTP on a loopback port): tables, --json, progress, exit
statuses."""

from __future__ import annotations

import json
import threading
import webbrowser

import pytest
import requests

from modeldrop.cli import main, serving
from modeldrop.cli.exits import Exit
from modeldrop.domain.deployment import State
from modeldrop.service.ports import LogEntry
from modeldrop.service.reconcile import reconcile
from tests.unit.cli.conftest import FAILURE


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def api_json(api, path: str) -> dict:
    return requests.get(f"{api.url}{path}", timeout=10).json()


# list ---------------------------------------------------------------------------------------


def test_list_is_an_aligned_table_with_the_serving_mark(api, cli):
    v1 = api.deployed("alpha")
    v2 = api.deployed("alpha")
    beta = api.deployed("beta")
    code, out, _ = cli("list")
    assert code == Exit.OK
    header, *table = out.strip().splitlines()
    assert header.split() == [
        "ID", "MODEL", "REVISION", "STATE", "SERVING", "REGION/MACHINE", "$/H", "AGE"
    ]  # fmt: skip
    starts = [header.index(h) for h in ("MODEL", "STATE", "REGION/MACHINE")]
    for line in table:  # aligned: every column starts where its header does
        assert all(line[s - 2 : s] == "  " and line[s] != " " for s in starts), line
    by_id = {r[0]: r for r in rows("\n".join(table)) if r[3] != "SUPERSEDED"}
    assert set(by_id) == {v1.id, v2.id, beta.id}  # (uploads file by file supersede a few)
    assert by_id[v2.id][4] == "*" and by_id[beta.id][4] == "*"  # the names answer from these
    assert by_id[v1.id][3:5] == ["DEPLOYED", "us-central1/g2-standard-4"]  # no mark
    assert by_id[v2.id][1:4] == ["alpha", str(v2.revision), "DEPLOYED"]
    assert by_id[v2.id][5:7] == ["us-central1/g2-standard-4", "1xNVIDIA_L4"]
    assert by_id[v2.id][7] == "$0.81"


def test_list_filters_and_json_is_the_apis_page(api, cli):
    api.deployed("alpha")
    api.rejected("gamma")
    code, out, _ = cli("list", "--json", "--state", "REJECTED")
    assert code == Exit.OK
    assert json.loads(out) == api_json(api, "/v1/deployments?state=REJECTED&limit=50")
    assert [d["model"] for d in json.loads(out)["deployments"]] == ["gamma"]
    code, out, _ = cli("list", "--model", "alpha")
    assert [r[1] for r in rows(out)[1:]] == ["alpha"]
    code, out, err = cli("list", "--limit", "1")
    assert len(rows(out)) == 2 and "--page-token" in err
    code, _, err = cli("list", "--state", "SLEEPING")  # the api's 400, with its hint
    assert code == Exit.REFUSED and "BAD_FILTER" in err and "hint:" in err


def test_list_of_nothing(api, cli):
    assert cli("list") == (Exit.OK, "no deployments\n", "")


# show ---------------------------------------------------------------------------------------


def test_show_a_name_has_its_timeline_findings_cost_and_revisions(api, cli):
    v1 = api.deployed("alpha")
    v2 = api.deployed("alpha")
    code, out, _ = cli("show", "alpha")
    assert code == Exit.OK
    assert out.startswith(f"{v2.id}  DEPLOYED  (newest revision of alpha)")
    assert f"serving     {v2.id}" in out
    assert "placement   us-central1/g2-standard-4 1xNVIDIA_L4" in out
    assert "cost        $0.8129/h, $0.0000 so far (estimate)" in out
    assert "smoke test  passed (chat, 1 tries, 0 ms): hi" in out
    history = out.split("  history\n")[1].split("  findings\n")[0]
    assert [line.split()[1] for line in history.splitlines()[1:]] == [
        "DETECTED", "VALIDATING", "VALIDATED", "DEPLOYING", "DEPLOYED"
    ]  # fmt: skip
    assert "BASE_MODEL_MATCHED" in out and "config.json: The architecture matches" in out
    revisions = out.split("  revisions (* serving)\n")[1].splitlines()[1:]
    shown = [r.split() for r in revisions if "SUPERSEDED" not in r]
    assert shown == [
        ["*", v2.id, str(v2.revision), "DEPLOYED"],
        [v1.id, str(v1.revision), "DEPLOYED"],
    ]


def test_show_an_id_and_json(api, cli):
    v1 = api.deployed("alpha")
    code, out, _ = cli("show", v1.id)
    assert code == Exit.OK and out.startswith(f"{v1.id}  DEPLOYED\n") and "revisions" not in out
    code, out, _ = cli("show", v1.id, "--json")
    assert json.loads(out) == api_json(api, f"/v1/deployments/{v1.id}")
    code, out, _ = cli("show", "alpha", "--json")
    assert json.loads(out) == api_json(api, "/v1/models/alpha")


def test_show_of_a_rejected_or_failed_deployment_says_so_in_its_exit_status(api, cli):
    rejected = api.rejected("gamma")
    code, out, err = cli("show", "gamma")
    assert code == Exit.REJECTED and f"{rejected.id} is REJECTED" in err
    assert "QUANTIZED_CONFIG" in out and "error       QUANTIZED_CONFIG" in out
    record = api.failed("delta")
    code, out, err = cli("show", record.id)
    assert code == Exit.FAILED and "is FAILED" in err and "VERTEX_INVALID_ARGUMENT" in out


def test_not_found_is_4(api, cli):
    for command in (["show", "nope"], ["delete", "nope"], ["logs", "nope"], ["redeploy", "x"]):
        code, out, err = cli(*command)
        assert code == Exit.NOT_FOUND and out == "", command
        assert err.startswith("modeldrop: not found:"), err
    code, _, err = cli("rollback", "nope")
    assert code == Exit.NOT_FOUND and "Model 'nope' does not exist" in err


# delete -------------------------------------------------------------------------------------


def test_delete_waits_until_undeployed_printing_each_state(api, cli, no_sleep):
    record = api.deployed("alpha")
    steps = iter([False, False, True])  # Vertex AI takes two polls to undeploy
    api.h.deployer.undeploy = lambda endpoint: next(steps)
    api.ticks.append(lambda: reconcile(api.h.ctx))
    code, out, err = cli("delete", record.id, "--interval", "0.5")
    assert code == Exit.OK and out == f"{record.id}  UNDEPLOYED\n"
    progress = [line.split()[1] for line in err.splitlines()[1:]]
    assert progress == ["UNDEPLOYING", "UNDEPLOYED"] and "waiting for" in err
    assert no_sleep and set(no_sleep) == {0.5}
    assert api.h.store.get(record.id).state is State.UNDEPLOYED


def test_delete_of_a_name_deletes_its_serving_revision_and_says_so(api, cli):
    v1 = api.deployed("alpha")
    v2 = api.deployed("alpha")
    code, out, err = cli("delete", "alpha", "--json")
    assert code == Exit.OK and f"alpha: deleting its serving revision {v2.id}" in err
    assert json.loads(out)["id"] == v2.id and json.loads(out)["state"] == "UNDEPLOYED"
    assert api.h.store.get(v1.id).state is State.DEPLOYED  # the other revision is untouched


def test_delete_of_a_name_without_a_serving_revision_is_refused(api, cli):
    api.rejected("gamma")
    code, out, err = cli("delete", "gamma")
    assert code == Exit.NOT_FOUND and out == ""
    assert "Model gamma has no serving revision to delete" in err and "modeldrop show" in err


def test_delete_no_wait_answers_undeploying_at_once(api, cli):
    record = api.deployed("alpha")
    api.h.deployer.undeploy = lambda endpoint: False
    code, out, err = cli("delete", record.id, "--no-wait")
    assert (code, out, err) == (Exit.OK, f"{record.id}  UNDEPLOYING\n", "")


def test_delete_gives_up_after_its_timeout(api, cli, monkeypatch):
    record = api.deployed("alpha")
    api.h.deployer.undeploy = lambda endpoint: False
    monkeypatch.setattr("modeldrop.cli.common.sleep", lambda s: None)
    code, out, err = cli("delete", record.id, "--timeout", "0.2", "--interval", "0.01")
    assert code == Exit.TIMEOUT and "still UNDEPLOYING after 0.2 s" in err
    assert out == f"{record.id}  UNDEPLOYING\n"


def test_refused_is_1_with_the_apis_code_message_and_hint(api, cli):
    record = api.deployed("alpha")
    code, out, err = cli("redeploy", record.id)
    assert code == Exit.REFUSED and out == ""
    first, *rest = err.splitlines()
    assert first == (
        f"modeldrop: the api refused (HTTP 409 NOT_UNDEPLOYED): Deployment {record.id} is "
        "DEPLOYED; only an UNDEPLOYED one is redeployed."
    )
    assert rest == [
        "  state: DEPLOYED",
        "  hint: A DEPLOYED one answers already; wait for an UNDEPLOYING one to finish.",
    ]
    code, _, err = cli("rollback", "alpha")
    assert code == Exit.REFUSED and "NO_PREVIOUS_REVISION" in err and "hint: Rollback" in err


# rollback and redeploy ----------------------------------------------------------------------


def test_rollback_points_the_name_back(api, cli):
    v1 = api.deployed("alpha")
    api.deployed("alpha")
    code, out, _ = cli("rollback", "alpha")
    assert (code, out) == (Exit.OK, f"alpha now answers from {v1.id}\n")
    assert api_json(api, "/v1/models/alpha")["serving"] == v1.id


def test_redeploy_waits_until_deployed(api, cli, no_sleep):
    record = api.deployed("alpha")
    code, _, _ = cli("delete", record.id)
    assert code == Exit.OK
    api.ticks.append(api.deploy_pending)
    code, out, err = cli("redeploy", record.id, "--interval", "0.01")
    assert code == Exit.OK and out == f"{record.id}  DEPLOYED\n"
    assert [line.split()[1] for line in err.splitlines()[1:]] == ["VALIDATED", "DEPLOYED"]
    assert api.h.store.get(record.id).deploy_round == 2


def test_redeploy_that_fails_is_6(api, cli, no_sleep):
    record = api.deployed("alpha")
    cli("delete", record.id)
    api.ticks.append(lambda: api.deploy_pending(error=FAILURE))
    code, out, err = cli("redeploy", record.id, "--json")
    assert code == Exit.FAILED and json.loads(out)["state"] == "FAILED"
    assert err.splitlines()[-1].split()[1] == "FAILED"


def test_redeploy_of_a_name_points_at_its_revisions(api, cli):
    record = api.deployed("alpha")
    code, _, err = cli("redeploy", "alpha")
    assert code == Exit.NOT_FOUND and "alpha is a model name" in err and record.id in err


# logs ---------------------------------------------------------------------------------------


def entry(second: int, text: str) -> LogEntry:
    return LogEntry(at=f"2026-11-24T12:00:{second:02d}Z", severity="INFO", text=text)


def test_logs_of_a_name_are_its_serving_revisions_oldest_first(api, cli):
    api.deployed("alpha")
    v2 = api.deployed("alpha")
    api.h.logs.entries[v2.id] = [entry(2, "second"), entry(1, "first")]  # newest first
    code, out, err = cli("logs", "alpha")
    assert code == Exit.OK and f"the log of its serving revision {v2.id}" in err
    assert [line.split()[-1] for line in out.splitlines()] == ["first", "second"]
    code, out, _ = cli("logs", v2.id, "--json", "--limit", "1")
    assert json.loads(out) == api_json(api, f"/v1/deployments/{v2.id}/logs?limit=1")


def test_logs_follow_prints_new_lines_once_and_ctrl_c_is_130(api, cli, monkeypatch):
    record = api.deployed("alpha")
    api.h.logs.entries[record.id] = [entry(1, "first")]
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:  # a new line, and the old one again
            api.h.logs.entries[record.id] = [entry(2, "second"), entry(1, "first")]
        elif len(polls) == 2:  # two lines of the same second, one repeated
            api.h.logs.entries[record.id] = [entry(2, "third"), entry(2, "second")]
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr("modeldrop.cli.common.sleep", sleep)
    code, out, err = cli("logs", record.id, "--follow", "--interval", "0.1")
    assert code == Exit.INTERRUPTED and "interrupted" in err
    assert [line.split()[-1] for line in out.splitlines()] == ["first", "second", "third"]
    assert polls == [0.1, 0.1, 0.1]


def test_logs_escape_control_characters_and_cut_long_lines(api, cli):
    record = api.deployed("alpha")
    api.h.logs.entries[record.id] = [entry(1, "\x1b[31mred\x1b[0m " + "x" * 5000)]
    code, out, _ = cli("logs", record.id)
    assert code == Exit.OK and "\x1b" not in out and "\\x1b[31mred" in out
    assert "(5013 in all)" in out and len(out) < 2200


# chat ---------------------------------------------------------------------------------------


def test_chat_streams_the_answer_as_it_arrives(api, cli, monkeypatch):
    record = api.deployed("alpha")
    shown = threading.Event()
    seen_before_the_rest: list[bool] = []

    class Out:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            if "Hel" in self.text:
                shown.set()
            return len(text)

        def flush(self) -> None:
            pass

    def chunks():
        yield b'data: {"choices": [{"delta": {"content": "Hel"}}]}\n\n'
        seen_before_the_rest.append(shown.wait(5))  # printed before the endpoint goes on
        yield b'data: {"choices": [{"delta": {"content": "lo \\u001b[2J"}}]}\n\n'
        yield b'data: {"choices": [{"delta": {"content": "there"}}]}\n\n'

    api.h.endpoints.stream_chunks = chunks()
    out = Out()
    monkeypatch.setattr("sys.stdout", out)
    code = main(["chat", "alpha", "Say hello", "--api", api.url, "--max-tokens", "8"])
    assert code == Exit.OK and seen_before_the_rest == [True]
    assert out.text == "Hello \\x1b[2Jthere\n"  # an escape sequence is shown, not obeyed
    kind, deployment_id, body = api.h.endpoints.calls[-1]
    assert (kind, deployment_id) == ("stream", record.id)
    assert body["stream"] is True and body["max_tokens"] == 8
    assert body["messages"] == [{"role": "user", "content": "Say hello"}]


def test_chat_by_deployment_id_json_and_answered_by(api, cli):
    api.deployed("alpha")
    v2 = api.deployed("alpha")
    code, out, err = cli("chat", v2.id, "hi", "--json", "--temperature", "0")
    assert code == Exit.OK and f"(answered by deployment {v2.id})" in err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"choices": [{"delta": {"content": "hi"}}]}
    ]
    assert api.h.endpoints.calls[-1][2]["temperature"] == 0


def test_chat_refusals(api, cli):
    code, _, err = cli("chat", "nope", "hi")
    assert code == Exit.NOT_FOUND and "does not exist" in err
    record = api.deployed("alpha")
    cli("delete", record.id)
    code, _, err = cli("chat", "alpha", "hi")
    assert code == Exit.REFUSED and "409" in err and ":redeploy" in err


def test_a_stream_that_breaks_off_is_refused_after_what_arrived(api, cli):
    from modeldrop.service.ports import UpstreamUnreachable

    api.deployed("alpha")

    def chunks():
        yield b'data: {"choices": [{"delta": {"content": "partial"}}]}\n\n'
        raise UpstreamUnreachable("The endpoint went away.", "Try again.")

    api.h.endpoints.stream_chunks = chunks()
    code, out, err = cli("chat", "alpha", "hi")
    assert code == Exit.REFUSED and out == "partial\n"
    assert "The endpoint went away." in err


# costs --------------------------------------------------------------------------------------


def test_costs_table_totals_and_json(api, cli):
    alpha = api.deployed("alpha")
    beta = api.deployed("beta")
    code, out, _ = cli("costs")
    assert code == Exit.OK
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "MODEL", "STATE", "REGION", "$/H", "ACCRUED"]
    assert sorted(r.split()[0] for r in lines[1:3]) == sorted([alpha.id, beta.id])
    assert lines[1].split()[2:5] == ["DEPLOYED", "us-central1", "$0.8129"]
    assert lines[3] == "total $1.6258/h, $0.0000 accrued" and "estimate" in lines[4].lower()
    code, out, _ = cli("costs", "--json")
    assert json.loads(out) == api_json(api, "/v1/costs")


def test_costs_of_nothing_running(api, cli):
    code, out, _ = cli("costs")
    assert code == Exit.OK and out.startswith("nothing running\ntotal $0.0000/h")


# status -------------------------------------------------------------------------------------


def test_status_watch_exit_says_how_it_settled(api, cli, no_sleep):
    api.deployed("alpha")
    api.rejected("gamma")
    code, out, err = cli("status", "alpha", "--watch")
    assert code == Exit.OK and json.loads(out)["state"] == "DEPLOYED"
    assert "DEPLOYED" in err.splitlines()[-1]  # progress on stderr, JSON alone on stdout
    code, out, err = cli("status", "gamma", "--watch")
    assert code == Exit.REJECTED and json.loads(out)["state"] == "REJECTED"
    code, out, _ = cli("status")
    assert code == Exit.OK and len(json.loads(out)["deployments"]) == 2
    assert cli("status", "nope")[0] == Exit.NOT_FOUND


def test_status_watch_waits_for_a_model_not_uploaded_yet(api, cli, monkeypatch):
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            api.deployed("late")

    monkeypatch.setattr("modeldrop.cli.common.sleep", sleep)
    code, out, _ = cli("status", "late", "--watch", "--interval", "0.01")
    assert code == Exit.OK and json.loads(out)["model"] == "late" and len(polls) == 2


# ui -----------------------------------------------------------------------------------------


def test_ui_prints_the_url_and_opens_a_browser_when_there_is_one(api, cli, monkeypatch):
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(serving, "has_browser", lambda: True)
    code, out, err = cli("ui")
    assert (code, out, opened) == (Exit.OK, f"{api.url}/ui\n", [f"{api.url}/ui"])
    assert "opened" in err
    opened.clear()
    code, out, _ = cli("ui", "--no-browser")
    assert (code, out, opened) == (Exit.OK, f"{api.url}/ui\n", [])


def test_ui_in_a_headless_session_only_prints_the_url(api, cli, monkeypatch):
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    code, out, err = cli("ui")
    assert (code, out, opened) == (Exit.OK, f"{api.url}/ui\n", [])
    assert "no browser here" in err


@pytest.mark.parametrize("command", ["list", "show", "delete", "logs", "chat", "costs", "ui"])
def test_help_documents_the_exit_statuses(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "4  not found" in out and "130  interrupted" in out
