"""The dashboard (GET /ui) in a real browser: headless Chromium (Debian's `chromium`) driven by
Playwright, on a local stack on the echo engine with MODELDROP_API_TOKENS set.

A page that needs a token until one is entered; an upload whose row goes to DEPLOYED without a
reload; its timeline, findings, smoke test, cost, log and notification ids; a chat answer
streamed into the chat box; the phone-width layout; a refused rollback with the api's message;
delete (confirmed) and UNDEPLOYED, then redeploy; a REJECTED upload with its findings, the
filters, keyboard navigation and a refused redeploy; the page under a path prefix (a reverse
proxy mounting the api at /prefix/, as `gcloud run services proxy` or a load balancer may).

Each page is saved as a screenshot under .modeldrop/screenshots/ (test artefacts, ignored by
git); with MODELDROP_DOCS_SCREENSHOTS=1 the README's small ones are written to docs/screenshots/
as well (viewport-sized PNGs, committed).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from modeldrop.local.emulators import missing_emulators
from tests.fixtures.local_stack import upload
from tests.fixtures.model_folders import write_valid

CHROMIUM = os.environ.get("MODELDROP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".modeldrop" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
TOKEN = "dashboard-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREFIX = "/prefix"
GOOD, BAD = "dash-tiny", "dash-broken"
LIFECYCLE = ["DETECTED", "VALIDATING", "VALIDATED", "DEPLOYING", "DEPLOYED"]
WIDE = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "BROWSER MISSING: playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"BROWSER MISSING: no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


# -- the stack, a proxy under a prefix, the browser ------------------------------------------
@pytest.fixture(scope="module")
def dashboard_stack(tmp_path_factory) -> Iterator[Any]:
    """A stack on the echo engine whose api wants a bearer token."""
    if reason := _browser_missing():
        pytest.skip(reason)
    if reason := missing_emulators():
        pytest.skip(f"EMULATORS MISSING: {reason}")
    from modeldrop.local.stack import LocalStack, StackConfig

    config = StackConfig(
        state_dir=Path(tmp_path_factory.mktemp("dashboard")),
        engine="echo",
        tick_seconds=1.0,
        lease_seconds=15,
        extra_env={"MODELDROP_API_TOKENS": TOKEN},
    )
    with LocalStack(config) as s:
        yield s


@pytest.fixture(scope="module")
def uploads(dashboard_stack, tmp_path_factory) -> dict[str, Path]:
    """The folders, uploaded by the tests that watch them."""
    root = Path(tmp_path_factory.mktemp("dashboard-folders"))
    good = write_valid(root / GOOD)
    bad = write_valid(root / BAD)
    (bad / "config.json").write_text("{not json")
    return {GOOD: good, BAD: bad}


HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


class _PrefixProxy(BaseHTTPRequestHandler):
    """What `gcloud run services proxy` or a load balancer with a path does: /prefix/X is
    forwarded to the api's /X, the answer streamed back chunk by chunk."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        if not self.path.startswith(PREFIX + "/"):
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        connection.request(self.command, self.path[len(PREFIX) :], body=body, headers=headers)
        answer = connection.getresponse()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := answer.read1(65536):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        connection.close()

    do_GET = do_POST = do_DELETE = _forward


@pytest.fixture(scope="module")
def prefixed(dashboard_stack) -> Iterator[str]:
    """The api under http://127.0.0.1:PORT/prefix/."""
    api = urlsplit(dashboard_stack.urls["api"])
    handler = type("Proxy", (_PrefixProxy,), {"upstream": (api.hostname, api.port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="prefix-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{PREFIX}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(dashboard_stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_with_token(browser) -> Iterator[Any]:
    """A tab whose session already holds the token (as after entering it once)."""
    context = browser.new_context(viewport=WIDE)
    context.add_init_script(f"sessionStorage.setItem('modeldrop.api-token', {TOKEN!r})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        yield page
    finally:
        context.close()
    assert not [e for e in errors if "401" not in e and "409" not in e], errors


def shot(page: Any, name: str, docs: str | None = None, **options: Any) -> Path:
    """Save a screenshot under .modeldrop/screenshots/ (and the README's under docs/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    if docs and os.environ.get("MODELDROP_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        # what the viewport shows, down to the end of the content: small files
        size = page.viewport_size
        bottom = page.evaluate(
            "Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)"
        )
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], bottom)}
        page.screenshot(path=str(DOCS / f"{docs}.png"), clip=clip)
    return path


def record(stack: Any, name: str) -> dict[str, Any]:
    response = requests.get(f"{stack.urls['api']}/v1/models/{name}", headers=AUTH, timeout=10)
    return response.json() if response.ok else {}


def row(page: Any, name: str) -> Any:
    return page.locator("#deployment-rows tr", has=page.locator(f"a:text-is('{name}')"))


# -- the tests -------------------------------------------------------------------------------
def test_the_page_loads_without_a_token_and_the_data_waits_for_one(dashboard_stack, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    try:
        page.goto(f"{dashboard_stack.urls['api']}/ui")
        notice = page.locator("#notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("The api needs a token.")
        expect(notice).to_contain_text("UNAUTHENTICATED")
        expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#list-status")).to_contain_text("Not updated")
        shot(page, "01-token-needed")

        page.fill("#token", "wrong")
        page.click("text=Use token")
        expect(notice).to_contain_text("The api refused this token.")

        page.fill("#token", TOKEN)
        page.keyboard.press("Enter")  # the form submits from the keyboard
        expect(notice).to_be_hidden()
        expect(page.locator("#list-status")).to_contain_text("updated")
        page.reload()  # kept for the tab's session
        expect(page.locator("#list-status")).to_contain_text("updated")
        assert page.evaluate("sessionStorage.getItem('modeldrop.api-token')") == TOKEN
        page.click("#token-forget")
        expect(notice).to_contain_text("The api needs a token.")
    finally:
        context.close()


def test_an_upload_goes_live_to_deployed_then_chat_and_delete(
    dashboard_stack, uploads, page_with_token
):
    from playwright.sync_api import expect

    page = page_with_token
    page.goto(f"{dashboard_stack.urls['api']}/ui")
    expect(page.locator("#list-status")).to_contain_text("updated")
    # every state a row of the model shows, as the page changes it (no reload in between)
    page.evaluate(
        """name => {
          window.__seen = [];
          window.__loadedOnce = true;
          const note = () => {
            for (const tr of document.querySelectorAll('#deployment-rows tr')) {
              const a = tr.querySelector('a');
              if (a && a.textContent === name) {
                const s = tr.dataset.state;
                if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
              }
            }
          };
          new MutationObserver(note).observe(document.getElementById('deployment-rows'),
            {subtree: true, childList: true, attributes: true});
        }""",
        GOOD,
    )
    started = time.monotonic()
    upload(dashboard_stack, uploads[GOOD], GOOD)
    good = row(page, GOOD)
    expect(good).to_have_attribute("data-state", "DEPLOYED", timeout=WAIT_MS)
    expect(good).to_contain_text("serving")
    seen = page.evaluate("window.__seen")
    assert page.evaluate("window.__loadedOnce === true"), "the page reloaded"
    assert seen[-1] == "DEPLOYED" and seen == [s for s in LIFECYCLE if s in seen], seen
    assert time.monotonic() - started < WAIT_MS / 1000
    expect(page.locator("#list-live")).to_contain_text(f"{GOOD} revision 1")
    expect(good).to_contain_text("us-central1")  # placement
    expect(good).to_contain_text("/h")  # hourly cost
    shot(page, "02-deployments")

    # one deployment: timeline, findings, smoke test, cost, log, notification ids
    good.locator("a").click()
    expect(page.locator("#detail-view")).to_be_visible()
    expect(page.locator("#d-title")).to_be_focused()  # keyboard and screen reader land there
    timeline = page.locator("#d-timeline tbody tr")
    expect(timeline).to_have_count(len(LIFECYCLE))
    for i, state in enumerate(LIFECYCLE):
        expect(timeline.nth(i)).to_contain_text(state)
    expect(page.locator("#d-chart svg rect")).to_have_count(len(LIFECYCLE))
    findings = record(dashboard_stack, GOOD)["findings"]
    for finding in findings:
        expect(page.locator("#d-findings table")).to_contain_text(finding["code"])
    if not findings:
        expect(page.locator("#d-findings")).to_contain_text("No findings")
    expect(page.locator("#d-smoke")).to_contain_text("passed")
    expect(page.locator("#d-cost")).to_contain_text("per hour")
    expect(page.locator("#d-logs li").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#d-logs")).to_contain_text("echo engine")
    deployment_id = record(dashboard_stack, GOOD)["id"]
    expect(page.locator("#d-notifications")).to_contain_text(f"{deployment_id}-5")
    expect(page.locator("#d-serving")).to_contain_text("serves the name")
    shot(page, "03-deployment", docs="deployment", full_page=True)

    # try it: the answer streams through the api's chat route
    chats: list[dict] = []
    page.on(
        "request",
        lambda r: chats.append(r.post_data_json) if r.url.endswith("/chat/completions") else None,
    )
    page.fill("#chat-input", "clocks tell the time")
    page.fill("#chat-max-tokens", "6")
    page.fill("#chat-temperature", "0.2")
    page.focus("#chat-input")
    page.keyboard.press("Control+Enter")
    answer = page.locator(".msg-assistant .content").last
    expect(answer).to_have_text("clocks tell the time clocks tell")
    expect(page.locator(".msg-assistant").last).to_have_attribute("aria-busy", "false")
    assert chats and chats[0]["stream"] is True, chats
    assert chats[0]["max_tokens"] == 6 and chats[0]["temperature"] == 0.2
    page.locator("#chat-title").evaluate("e => e.scrollIntoView({block: 'start'})")
    shot(page, "04-chat", docs="chat")

    # phone width: the tables become cards, nothing runs off the side
    page.set_viewport_size(PHONE)
    page.goto(f"{dashboard_stack.urls['api']}/ui#/")
    expect(row(page, GOOD)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "05-phone", docs="phone")
    row(page, GOOD).locator("a").click()
    expect(page.locator("#d-state")).to_contain_text("DEPLOYED")
    expect(page.locator("#d-timeline tbody tr")).to_have_count(len(LIFECYCLE))
    expect(page.locator("#d-logs li").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "05-phone-deployment", full_page=True)
    page.set_viewport_size(WIDE)

    # rollback with no earlier revision: the api's refusal, its code and hint, on the page
    page.goto(f"{dashboard_stack.urls['api']}/ui#/d/{deployment_id}")
    expect(page.locator("#d-state")).to_contain_text("DEPLOYED")
    page.click("#act-rollback")
    refusal = page.locator("#act-result .problem")
    expect(refusal).to_contain_text(f"Roll back {GOOD} was refused (HTTP 409)")
    expect(refusal).to_contain_text("NO_PREVIOUS_REVISION")

    # delete, with a confirmation: UNDEPLOYING, then UNDEPLOYED
    page.click("#act-delete")
    dialog = page.locator("#confirm-delete")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(deployment_id)
    page.keyboard.press("Escape")  # cancel: nothing happens
    expect(dialog).to_be_hidden()
    assert record(dashboard_stack, GOOD)["state"] == "DEPLOYED"
    page.click("#act-delete")
    page.click("#confirm-yes")
    expect(page.locator("#act-result")).to_contain_text("Delete: done")
    expect(page.locator("#d-state")).to_contain_text("UNDEPLOYED", timeout=WAIT_MS)
    expect(page.locator("#chat-send")).to_be_disabled()
    shot(page, "06-undeployed", full_page=True)

    # and redeploy: the unchanged folder goes back to VALIDATED and on through the deploy
    page.click("#act-redeploy")
    expect(page.locator("#act-result")).to_contain_text("Redeploy: done. Now VALIDATED.")
    expect(page.locator("#d-timeline tbody tr").nth(len(LIFECYCLE) + 2)).to_contain_text(
        "VALIDATED"
    )


def test_a_rejected_upload_shows_its_findings_and_a_refused_action(
    dashboard_stack, uploads, page_with_token
):
    from playwright.sync_api import expect

    page = page_with_token
    page.goto(f"{dashboard_stack.urls['api']}/ui")
    upload(dashboard_stack, uploads[BAD], BAD)
    page.select_option("#filter-state", "REJECTED")  # the filter asks the api for REJECTED only
    bad = row(page, BAD)
    expect(bad).to_have_attribute("data-state", "REJECTED", timeout=WAIT_MS)
    expect(page.locator("#deployment-rows tr:not([data-state='REJECTED'])")).to_have_count(0)
    page.fill("#filter-model", GOOD)
    page.keyboard.press("Enter")
    expect(page.locator("#list-empty")).to_be_visible()
    page.click("button[type=reset]")
    expect(bad).to_be_visible()
    bad.locator("a").focus()
    page.keyboard.press("Enter")  # keyboard only
    expect(page.locator("#d-why")).to_contain_text("Why it is REJECTED")
    findings = page.locator("#d-findings table")
    expect(findings).to_contain_text("CONFIG_INVALID_JSON")
    expect(findings).to_contain_text("config.json")
    expect(findings.locator("tbody tr").first).to_contain_text("error")
    expect(page.locator("#d-timeline")).to_contain_text("final")
    expect(page.locator("#chat-state")).to_contain_text("needs a DEPLOYED deployment")
    page.click("#act-redeploy")
    refusal = page.locator("#act-result .problem")
    expect(refusal).to_contain_text("Redeploy was refused (HTTP 409)")
    expect(refusal).to_contain_text("NOT_UNDEPLOYED")
    expect(refusal).to_contain_text("Hint:")
    shot(page, "07-rejected", docs="rejected", full_page=True)


def test_the_page_works_under_a_path_prefix(dashboard_stack, uploads, prefixed, page_with_token):
    from playwright.sync_api import expect

    page = page_with_token
    for name in (GOOD, BAD):  # uploaded by the tests before, unless this one runs alone
        if not record(dashboard_stack, name):
            upload(dashboard_stack, uploads[name], name)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"{prefixed}/ui")
    expect(page.locator("#list-status")).to_contain_text("updated")
    # the redeployed one is DEPLOYED again (and serving), the broken one REJECTED
    expect(row(page, GOOD)).to_have_attribute("data-state", "DEPLOYED", timeout=WAIT_MS)
    expect(row(page, GOOD)).to_contain_text("serving")
    expect(row(page, BAD)).to_have_attribute("data-state", "REJECTED")
    shot(page, "08-under-a-prefix", docs="deployments")
    row(page, GOOD).locator("a").click()
    expect(page.locator("#d-state")).to_contain_text("DEPLOYED")
    expect(page.locator("#d-timeline tbody tr").first).to_be_visible()
    expect(page.locator("#d-load-error")).to_be_hidden()
    shot(page, "09-under-a-prefix-deployment")
    assert any("/prefix/v1/deployments/" in url for url in asked), asked
    outside = [u for u in asked if not u.startswith(prefixed + "/")]
    assert not outside, outside  # every asset and every api call went through the prefix
