"""How the CLI finds and reaches the api: --api, MODELDROP_API_URL, the local stack's
stack.json, bearer tokens (never printed), an api that cannot be reached or is not the api."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modeldrop.api_client import ApiClient, display_url
from modeldrop.cli import main
from modeldrop.cli.exits import Exit
from tests.unit.cli.conftest import serve
from tests.unit.service.fakes import make_harness

TOKEN = "s3cret-token-value"


@pytest.fixture
def gated(tmp_path, monkeypatch):
    """An api with MODELDROP_API_TOKENS set."""
    monkeypatch.delenv("MODELDROP_API_TOKEN", raising=False)
    monkeypatch.delenv("MODELDROP_IDENTITY_TOKEN", raising=False)
    h = make_harness(tmp_path, MODELDROP_API_TOKENS=f"other,{TOKEN}")
    yield from serve(h, tmp_path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_token_from_the_flag_or_the_variable_and_never_printed(gated, capsys, monkeypatch):
    gated.deployed("alpha")
    code, out, err = run(capsys, "list", "--api", gated.url)
    assert code == Exit.REFUSED and out == ""
    assert "HTTP 401 UNAUTHENTICATED" in err and "--token" in err and "MODELDROP_API_TOKEN" in err
    code, out, err = run(capsys, "list", "--api", gated.url, "--token", "wrong-one")
    assert code == Exit.REFUSED and "wrong-one" not in err
    code, out, err = run(capsys, "list", "--api", gated.url, "--token", TOKEN)
    assert code == Exit.OK and "alpha" in out and TOKEN not in out + err
    monkeypatch.setenv("MODELDROP_API_TOKEN", TOKEN)
    code, out, err = run(capsys, "show", "alpha", "--api", gated.url)
    assert code == Exit.OK and TOKEN not in out + err
    code, out, err = run(capsys, "chat", "alpha", "hi", "--api", gated.url)
    assert code == Exit.OK and out == "hi\n"


def test_an_identity_token_goes_next_to_the_api_token():
    both = ApiClient("https://api.example", token="api", identity_token="id")
    assert both.session.headers["Authorization"] == "Bearer api"
    assert both.session.headers["X-Serverless-Authorization"] == "Bearer id"
    alone = ApiClient("https://api.example", identity_token="id")
    assert alone.session.headers["Authorization"] == "Bearer id"
    assert "X-Serverless-Authorization" not in alone.session.headers


def test_the_api_url_from_the_variable_then_the_stack_file(api, capsys, monkeypatch, tmp_path):
    api.deployed("alpha")
    code, out, err = run(capsys, "list")  # none given, no stack running
    assert code == Exit.USAGE and "No api URL" in err and "make up" in err
    (tmp_path / ".modeldrop").mkdir()
    (tmp_path / ".modeldrop" / "stack.json").write_text(json.dumps({"api_url": api.url + "/"}))
    code, out, _ = run(capsys, "list")
    assert code == Exit.OK and "alpha" in out
    monkeypatch.setenv("MODELDROP_API_URL", "http://127.0.0.1:9")  # the variable wins
    assert run(capsys, "list")[0] == Exit.UNREACHABLE
    assert run(capsys, "list", "--api", api.url)[0] == Exit.OK  # and --api over it
    (tmp_path / ".modeldrop" / "stack.json").write_text("{")
    monkeypatch.delenv("MODELDROP_API_URL")
    code, _, err = run(capsys, "costs")
    assert code == Exit.USAGE and "holds no api_url" in err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_api_that_cannot_be_reached_is_3(capsys):
    url = f"http://user:password@127.0.0.1:{closed_port()}"
    for command in (["list"], ["show", "x"], ["chat", "x", "hi"], ["costs"], ["delete", "x"]):
        code, out, err = run(capsys, *command, "--api", url)
        assert code == Exit.UNREACHABLE and out == "", command
        assert "Cannot reach the api at http://127.0.0.1:" in err and "password" not in err


class NotTheApi(BaseHTTPRequestHandler):
    """A web server that is not the api: an HTML page, or a redirect elsewhere."""

    def do_GET(self) -> None:
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "https://elsewhere.example/login")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        page = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_the_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotTheApi)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_what_is_not_the_api_is_3_and_a_redirect_is_not_followed(not_the_api, capsys):
    code, _, err = run(capsys, "list", "--api", not_the_api)
    assert code == Exit.UNREACHABLE and "is not the api (HTTP 200, text/html)" in err
    code, _, err = run(capsys, "list", "--api", f"{not_the_api}/moved", "--token", TOKEN)
    assert code == Exit.REFUSED and "redirect to https://elsewhere.example/login" in err
    assert TOKEN not in err


def test_display_url_drops_credentials():
    assert display_url("https://u:p@api.example:8443/x") == "https://api.example:8443/x"
    assert display_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_ui_url_comes_from_the_same_resolution(capsys, monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELDROP_API_URL", "http://127.0.0.1:8123/")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    code, out, _ = run(capsys, "ui")
    assert (code, out) == (Exit.OK, "http://127.0.0.1:8123/ui\n")
