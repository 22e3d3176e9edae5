"""The client of the api function: every HTTP call the `modeldrop` commands make, in one place.

The api URL comes from --api, MODELDROP_API_URL or the local stack's .modeldrop/stack.json; the
bearer token from --token or MODELDROP_API_TOKEN (and, on Google Cloud with api tokens, the
identity token from --identity-token or MODELDROP_IDENTITY_TOKEN, sent in
X-Serverless-Authorization). What the api answers is read up to a bound, and no error message
carries a token.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from modeldrop.errors import AccessError, ModeldropError, UsageError

STACK_FILE = Path(".modeldrop/stack.json")
SETTLED = {"DEPLOYED", "REJECTED", "FAILED", "UNDEPLOYED", "SUPERSEDED"}
DEPLOYMENT_HEADER = "X-Modeldrop-Deployment"

MAX_ANSWER_BYTES = 16 * 2**20  # a JSON answer (a page of 200 records is well under it)
MAX_STREAM_BYTES = 16 * 2**20  # all of one streamed answer
MAX_EVENT_BYTES = 2**20  # one server-sent event line
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # a JSON answer
STREAM_READ_TIMEOUT = 300.0  # the longest wait for the next piece of a streamed answer


class ApiRefused(ModeldropError):
    """The api answered with an error: its HTTP `status`, stable `code`, message and hint, and
    the error's other fields in `details` (say, `state`)."""

    code = "API_ERROR"

    def __init__(
        self,
        status: int,
        message: str,
        hint: str = "",
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, hint, code)
        self.status = status
        self.details = details or {}


class NotFound(ApiRefused):
    """404: no such deployment, model or route."""

    code = "NOT_FOUND"


class Unreachable(AccessError):
    """The api could not be reached, or what answered is not the api (not its JSON)."""

    code = "API_UNREACHABLE"


def display_url(url: str) -> str:
    """The URL without any user:password part, fit to print."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def api_url(explicit: str | None = None, stack_file: Path | None = None) -> str:
    """--api, else MODELDROP_API_URL, else the local stack's .modeldrop/stack.json."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("MODELDROP_API_URL"):
        return os.environ["MODELDROP_API_URL"].rstrip("/")
    stack_file = stack_file or STACK_FILE
    if stack_file.exists():
        try:
            with stack_file.open("rb") as f:
                url = json.loads(f.read(MAX_EVENT_BYTES))["api_url"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{stack_file} holds no api_url.",
                "Restart the local stack (`make up`), or pass --api URL.",
            ) from exc
        if isinstance(url, str) and url:
            return url.rstrip("/")
    raise UsageError(
        "No api URL: none given and no local stack is running.",
        "Pass --api URL, set MODELDROP_API_URL, or start the local stack with `make up`.",
    )


def segment(value: str) -> str:
    """One path segment: an id or a name with '/', '?', '#' or ':' stays one segment."""
    return quote(value, safe="")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def refusal(status: int, body: Any) -> ApiRefused:
    """The error of an answer: the api's {"error": {code, message, hint, ...}}, or the
    OpenAI routes' {"error": {message, type, param, code}}."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = _text(error.get("code")).upper() or f"HTTP_{status}"
    message = _text(error.get("message")) or f"The api answered HTTP {status}."
    hint = _text(error.get("hint"))
    if status == 401:
        hint = f"{hint} Pass --token TOKEN or set MODELDROP_API_TOKEN.".strip()
    details = {
        k: v for k, v in error.items() if k not in {"code", "message", "hint", "status", "param"}
    }
    kind = NotFound if status == 404 else ApiRefused
    return kind(status, message, hint, code, details)


class ApiClient:
    """The api's routes as methods; each answers the api's JSON or raises ApiRefused, NotFound
    or Unreachable."""

    def __init__(
        self,
        base: str,
        token: str | None = None,
        identity_token: str | None = None,
        timeout: float = READ_TIMEOUT,
    ) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.answered_by: str | None = None  # of the last chat answer (X-Modeldrop-Deployment)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "modeldrop-cli"
        token = token or os.environ.get("MODELDROP_API_TOKEN")
        identity_token = identity_token or os.environ.get("MODELDROP_IDENTITY_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token.strip()}"
        if identity_token:
            header = "X-Serverless-Authorization" if token else "Authorization"
            self.session.headers[header] = f"Bearer {identity_token.strip()}"

    @property
    def shown_base(self) -> str:
        return display_url(self.base)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        read_timeout: float | None = None,
    ) -> requests.Response:
        try:
            return self.session.request(
                method,
                f"{self.base}{path}",
                params={k: v for k, v in (params or {}).items() if v is not None},
                json=body,
                stream=True,
                timeout=(CONNECT_TIMEOUT, read_timeout or self.timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> Unreachable:
        return Unreachable(  # the exception's text may hold the URL: only its type is shown
            f"Cannot reach the api at {self.shown_base}: {type(exc).__name__}.",
            "Check the URL (--api, MODELDROP_API_URL); for the local stack run `make up` first.",
        )

    def _refuse_redirect(self, response: requests.Response) -> None:
        """Redirects are not followed: the tokens go to the api only."""
        if 300 <= response.status_code < 400:
            response.close()
            where = display_url(response.headers.get("Location", ""))[:300] or "elsewhere"
            raise ApiRefused(
                response.status_code,
                f"The api at {self.shown_base} answered a redirect to {where}.",
                "Pass the URL the api is served at with --api (redirects are not followed).",
                code="REDIRECTED",
            )

    def _read(self, response: requests.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
        data = bytearray()
        try:
            for chunk in response.iter_content(65536):
                data += chunk
                if len(data) > limit:
                    raise ApiRefused(
                        response.status_code,
                        f"The api's answer is over {limit} bytes; not read further.",
                        "Ask for less (a smaller --limit).",
                        code="ANSWER_TOO_LARGE",
                    )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        finally:
            response.close()
        return bytes(data)

    def _decode(self, response: requests.Response, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            if response.status_code >= 400:
                return None  # an error page of a proxy in front: the status says enough
            kind = response.headers.get("Content-Type", "no content type")[:100]
            raise Unreachable(
                f"What answered at {self.shown_base} is not the api "
                f"(HTTP {response.status_code}, {kind}).",
                "Check the URL (--api, MODELDROP_API_URL).",
            ) from None

    def call(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        """One JSON request; the answer's JSON, or raises for an error status."""
        response = self._send(method, path, params=params, body=body)
        self._refuse_redirect(response)
        answer = self._decode(response, self._read(response))
        if response.status_code >= 400:
            raise refusal(response.status_code, answer)
        return answer

    # the routes ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/healthz")

    def deployments(
        self,
        states: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of GET /v1/deployments, newest first."""
        params = {"state": states, "model": model, "limit": limit, "page_token": page_token}
        return self.call("GET", "/v1/deployments", params)

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/deployments/{segment(deployment_id)}")

    def model(self, name: str) -> dict[str, Any]:
        """GET /v1/models/{name}: its newest revision's status plus `serving` and `revisions`."""
        return self.call("GET", f"/v1/models/{segment(name)}")

    def served_models(self) -> dict[str, Any]:
        """GET /v1/models (OpenAI's list): each name whose serving revision answers now."""
        return self.call("GET", "/v1/models")

    def delete(self, deployment_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/v1/deployments/{segment(deployment_id)}")

    def redeploy(self, deployment_id: str) -> dict[str, Any]:
        return self.call("POST", f"/v1/deployments/{segment(deployment_id)}:redeploy")

    def rollback(self, name: str) -> dict[str, Any]:
        return self.call("POST", f"/v1/models/{segment(name)}:rollback")

    def logs(self, deployment_id: str, limit: int | None = None) -> dict[str, Any]:
        """The newest entries of the serving log, newest first."""
        return self.call("GET", f"/v1/deployments/{segment(deployment_id)}/logs", {"limit": limit})

    def costs(self) -> dict[str, Any]:
        return self.call("GET", "/v1/costs")

    def resolve(self, target: str) -> dict[str, Any]:
        """A deployment by id, else a model name's status (it has `serving`)."""
        try:
            return self.deployment(target)
        except NotFound:
            pass
        try:
            return self.model(target)
        except NotFound as exc:
            raise NotFound(
                404,
                f"No deployment id or model name {target!r}."[:300],
                "List them with `modeldrop list`.",
                code="NOT_FOUND",
            ) from exc

    def chat_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /v1/chat/completions with "stream": true: each event's JSON as it arrives (a
        unary answer is one event with the whole message as its delta). `answered_by` is the
        deployment that answers, once the answer started."""
        response = self._send(
            "POST",
            "/v1/chat/completions",
            body={**body, "stream": True},
            read_timeout=STREAM_READ_TIMEOUT,
        )
        self._refuse_redirect(response)
        self.answered_by = response.headers.get(DEPLOYMENT_HEADER)
        kind = response.headers.get("Content-Type", "")
        if response.status_code >= 400 or "text/event-stream" not in kind:
            answer = self._decode(response, self._read(response))
            if response.status_code >= 400:
                raise refusal(response.status_code, answer)
            for choice in (answer or {}).get("choices") or []:
                message = choice.get("message") or {}
                yield {"choices": [{"index": 0, "delta": {"content": message.get("content")}}]}
            return
        yield from self._events(response)

    def _events(self, response: requests.Response) -> Iterator[dict[str, Any]]:
        buffer, total = b"", 0
        try:
            for chunk in _arriving(response):
                total += len(chunk)
                if total > MAX_STREAM_BYTES:
                    raise ApiRefused(
                        200,
                        f"The answer is over {MAX_STREAM_BYTES} bytes; not read further.",
                        "Ask for fewer tokens (--max-tokens).",
                        code="ANSWER_TOO_LARGE",
                    )
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_EVENT_BYTES:
                    raise ApiRefused(
                        200,
                        f"An event of the stream is over {MAX_EVENT_BYTES} bytes.",
                        code="EVENT_TOO_LARGE",
                    )
                for line in lines:
                    event = _event(line)
                    if event is _DONE:
                        return
                    if event is not None:
                        yield event
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        finally:
            response.close()

    # waiting ---------------------------------------------------------------------------------

    def wait(
        self,
        deployment_id: str,
        until: set[str],
        on_change: Callable[[dict[str, Any]], None],
        interval: float = 2.0,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        first: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Poll a deployment until its state is one of `until` or settled (SETTLED), calling
        `on_change` at each state change (and when `blocked` changes). (the last body, whether
        it ended before `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        body, last = first, None
        while True:
            if body is None:
                body = self.deployment(deployment_id)
            seen = (body.get("state"), bool(body.get("blocked")))
            if seen != last:
                last = seen
                on_change(body)
            if body.get("state") in until or body.get("state") in SETTLED:
                return body, True
            if deadline is not None and time.monotonic() >= deadline:
                return body, False
            sleep(interval)
            body = None

    def watch(
        self,
        target: str,
        interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the status each time its state changes, until it settles (or `timeout` seconds
        pass). A model not known yet (its upload is still running) is waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while deadline is None or time.monotonic() < deadline:
            try:
                body = self.resolve(target)
            except NotFound:
                sleep(interval)
                continue
            if body.get("state") != last:
                last = body.get("state")
                yield body
            if last in SETTLED:
                return
            sleep(interval)


_DONE: dict[str, Any] = {}


def _arriving(response: requests.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive: whatever the socket has, without waiting to fill a
    buffer (an answer without chunked encoding would otherwise arrive whole, at the end)."""
    read1 = getattr(response.raw, "read1", None)  # urllib3 2
    if read1 is None:
        yield from response.iter_content(None)
        return
    while chunk := read1(65536, decode_content=True):
        yield chunk


def _event(line: bytes) -> dict[str, Any] | None:
    """One line of a server-sent event stream: its data's JSON, _DONE, or None (not data).
    An error event raises ApiRefused."""
    line = line.rstrip(b"\r")
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if isinstance(event.get("error"), dict):
        raise refusal(502, event)
    return event
