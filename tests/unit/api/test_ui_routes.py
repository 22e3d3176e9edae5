"""The dashboard's routes on fakes: GET /ui and its assets, headers, no token, a fixed set of
names, relative URLs (it works under a path prefix), and nothing read at import time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from modeldrop.api import ui
from modeldrop.api.app import handle
from modeldrop.domain.deployment import State
from tests.unit.service.fakes import make_harness

TOKEN = "s3cret-token"
UI_DIR = Path(str(resources.files("modeldrop.api").joinpath("ui")))


def api_app(ctx) -> Flask:
    """The api function as functions-framework runs it: every path goes to handle()."""
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "DELETE"])
    def everything(path):
        return handle(request, ctx)

    return app


@pytest.fixture
def client(tmp_path):
    return api_app(make_harness(tmp_path).ctx).test_client()


@pytest.fixture
def guarded(tmp_path):
    """An api with MODELDROP_API_TOKENS set."""
    ctx = make_harness(tmp_path, MODELDROP_API_TOKENS=TOKEN).ctx
    return api_app(ctx).test_client()


class Page(HTMLParser):
    """What the page refers to, and anything inline."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self.in_script = False
        self.ids: set[str] = set()
        self.label_for: set[str] = set()
        self.fields: list[str] = []
        self.options: list[str] = []
        self.in_option = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
            if name.startswith("on") or name == "style":
                self.inline.append(f"{tag} {name}")
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "label" and attributes.get("for"):
            self.label_for.add(attributes["for"])
        if tag in ("input", "select", "textarea"):
            self.fields.append(attributes.get("id") or "")
        if tag == "script":
            self.in_script = True
            if not attributes.get("src"):
                self.inline.append("script without src")
        if tag == "style":
            self.inline.append("style element")
        self.in_option = tag == "option"

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False
        if tag == "option":
            self.in_option = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.inline.append("inline script")
        if self.in_option and data.strip():
            self.options.append(data.strip())


def parsed(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_the_page_is_served_with_its_security_headers(client):
    response = client.get("/ui")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "<title>modeldrop</title>" in response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("name", sorted(ui.ASSETS))
def test_each_asset_has_its_content_type(client, name):
    response = client.get(f"/ui/{name}")
    assert response.status_code == 200
    assert response.mimetype == ui.ASSETS[name]
    assert response.get_data() == (UI_DIR / name).read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nope.js",
        "/ui/index.html",  # the page is GET /ui, not an asset
        "/ui/..",
        "/ui/%2e%2e",
        "/ui/..%2fapp.py",
        "/ui/../routes.py",
        "/ui/%2e%2e%2f%2e%2e%2fsettings.py",
        "/ui/app.js%00.css",
        "/ui/APP.JS",
        "/ui/ui.py",
    ],
)
def test_only_the_listed_assets_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"]["code"] in {"NOT_FOUND", "NO_SUCH_ROUTE"}
    assert "import" not in response.get_data(as_text=True)  # no source file came back


def test_every_file_of_the_folder_is_served_and_nothing_else_is_there():
    assert {p.name for p in UI_DIR.iterdir()} == {ui.PAGE, *ui.ASSETS}


def test_the_page_and_its_assets_need_no_token_but_the_data_does(guarded):
    assert guarded.get("/ui").status_code == 200
    for name in ui.ASSETS:
        assert guarded.get(f"/ui/{name}").status_code == 200
    assert guarded.get("/v1/deployments").status_code == 401
    assert guarded.get("/openapi.json").status_code == 401
    assert guarded.get("/ui/nope.js").status_code == 404  # still no data, still no token
    answer = guarded.get("/v1/deployments", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200


def test_the_page_has_no_inline_script_or_style_and_only_relative_urls(client):
    page = parsed(client.get("/ui").get_data(as_text=True))
    assert page.inline == []
    assert page.urls
    for url in page.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url  # nothing from elsewhere
        assert not url.startswith("/"), url  # relative: works under any prefix


def test_every_field_has_a_label_and_the_state_filter_lists_every_state(client):
    page = parsed(client.get("/ui").get_data(as_text=True))
    assert page.fields
    for field in page.fields:
        assert field and field in page.label_for, field
    assert page.options == ["any state", *(str(s) for s in State)]


def test_the_script_never_writes_html():
    script = (UI_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    # its api base is the page's path up to /ui, and its calls go under it
    assert 'location.pathname.replace(/\\/ui(\\/.*)?$/, "")' in script
    assert not re.search(r"fetch\(\s*[\"'`]/", script), "an absolute path would miss a prefix"


def test_the_script_refers_only_to_elements_the_page_has(client):
    page = parsed(client.get("/ui").get_data(as_text=True))
    used = set(re.findall(r"\$\(\"([\w-]+)\"\)", (UI_DIR / "app.js").read_text()))
    assert used and used <= page.ids, used - page.ids


def test_the_page_works_under_a_path_prefix(tmp_path):
    """Mounted under /prefix (as a proxy would), the page and what it refers to resolve there."""
    inner = api_app(make_harness(tmp_path).ctx)
    outer = Flask("outer")
    outer.wsgi_app = DispatcherMiddleware(outer.wsgi_app, {"/prefix": inner.wsgi_app})
    browser = Client(outer)
    page_url = "http://proxy.test/prefix/ui"
    response = browser.get(page_url)
    assert response.status_code == 200
    for url in parsed(response.get_data(as_text=True)).urls:
        target = urljoin(page_url, url)
        if "#" in url:
            continue
        assert target.startswith("http://proxy.test/prefix/ui/"), target
        assert browser.get(target).status_code == 200, target
    # the script's api base for this page is /prefix: its calls land on the api
    listed = browser.get("http://proxy.test/prefix/v1/deployments")
    assert listed.status_code == 200 and "deployments" in listed.get_json()
    assert browser.get("http://proxy.test/ui").status_code == 404  # only under the prefix


def test_importing_the_api_reads_no_dashboard_file():
    """The api's cold start does not grow: the files are read on the first GET /ui."""
    probe = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'functions');"
        "import importlib.util as u;"
        "spec = u.spec_from_file_location('api', 'functions/api.py');"
        "m = u.module_from_spec(spec); spec.loader.exec_module(m);"
        "from modeldrop.api import ui; import json;"
        "print(json.dumps(ui._read.cache_info().currsize))"
    )
    root = Path(__file__).resolve().parents[3]
    env = {"MODELDROP_BUCKET": "b", "GOOGLE_CLOUD_PROJECT": "p", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == 0


def test_the_page_is_read_once_per_instance(client):
    ui._read.cache_clear()
    for _ in range(3):
        assert client.get("/ui").status_code == 200
    assert ui._read.cache_info().misses == 1
