"""The CLI's unit tests run it against a real api: the api function's Flask handler on the
unit fakes' harness, served by a werkzeug server on a loopback port in a thread, so every
command makes real HTTP requests. `ticks` run in the server's thread before each request
(reconcile, a deploy finishing): the harness is only ever touched from that thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from modeldrop.api.app import handle
from modeldrop.cli import common, main
from modeldrop.service.deploy import on_validated
from modeldrop.service.reconcile import reconcile
from tests.fixtures.bad_folders import CORPUS
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import Harness, make_harness

METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH"]
FAILURE = {"code": "VERTEX_INVALID_ARGUMENT", "message": "Vertex AI refused the deploy."}


@dataclass
class Api:
    h: Harness
    url: str
    root: Path
    ticks: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deployed(self, name: str) -> Any:
        """A new revision of `name`, DEPLOYED (and serving: it is the newest)."""
        with self.lock:
            record = upload_all(self.h, self.folder(name), name=name)[-1]
            self.deploy_pending()
            return self.h.store.get(record.id)

    def rejected(self, name: str) -> Any:
        folder = self.folder(name)
        CORPUS["gptq"][0](folder)
        with self.lock:
            return upload_all(self.h, folder, name=name)[-1]

    def folder(self, name: str) -> Path:
        return write_valid(self.root / "src" / name)

    def failed(self, name: str) -> Any:
        """A new revision of `name` whose deploy failed (FAILED)."""
        with self.lock:
            upload_all(self.h, self.folder(name), name=name)
            record_id = self.h.queue.messages[-1]
            self.deploy_pending(error=FAILURE)
            return self.h.store.get(record_id)

    def deploy_pending(self, error: dict[str, str] | None = None) -> None:
        """What the deploy function and reconcile do meanwhile: deploy what was validated,
        finish the operations (failed with `error`), one reconcile pass."""
        while self.h.queue.messages:
            on_validated(self.h.ctx, self.h.queue.messages.pop(0))
        self.h.deployer.finish(error=error)
        reconcile(self.h.ctx)


def serve(h: Harness, root: Path, **api: Any) -> Iterator[Api]:
    app = Flask("modeldrop-cli-tests")
    state = Api(h, "", root, **api)

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def any_route(path: str) -> Any:
        with state.lock:
            for tick in state.ticks:
                tick()
            return handle(request, h.ctx)

    server = make_server("127.0.0.1", 0, app, threaded=False)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def api(tmp_path, monkeypatch) -> Iterator[Api]:
    monkeypatch.delenv("MODELDROP_API_URL", raising=False)
    monkeypatch.delenv("MODELDROP_API_TOKEN", raising=False)
    monkeypatch.delenv("MODELDROP_IDENTITY_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .modeldrop/stack.json of a running stack is found
    h = make_harness(
        tmp_path, MODELDROP_RETIRE_AFTER_SECONDS="600", MODELDROP_RECORD_CACHE_SECONDS="0"
    )
    yield from serve(h, tmp_path)


@pytest.fixture
def no_sleep(monkeypatch) -> list[float]:
    """Polls do not wait; the seconds asked for are recorded."""
    slept: list[float] = []
    monkeypatch.setattr(common, "sleep", slept.append)
    return slept


@pytest.fixture
def cli(api, capsys) -> Callable[..., tuple[int, str, str]]:
    """cli("list", "--json") runs `modeldrop list --api URL --json`: (status, stdout, stderr)."""

    def run(command: str, *args: str, url: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([command, "--api", url or api.url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
