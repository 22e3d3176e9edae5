"""The "echo" engine: a trivial in-process OpenAI-compatible server that answers instantly.

A benchmark aid only: it measures what the emulator's and modeldrop's proxies add on top of an
engine that costs nothing. It echoes the prompt's words back and never loads the model, so it
proves nothing about serving; tests that claim a model is served use a real engine.

Like the process engines it writes a log file (what the emulator's serving log reads): its
start, each request it answers and its stop. The one thing it reads is the folder's config.json:
one that is there but not a JSON object fails the start (as it fails every real engine), with
the reason in the log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from modeldrop.local.emulators import LOOPBACK
from modeldrop.local.vertex.engines import EngineError

DEFAULT_MAX_TOKENS = 16


def _words(body: dict[str, Any]) -> tuple[list[str], int]:
    """The words to answer with and the prompt's length in words."""
    if "messages" in body:
        contents = [m.get("content") for m in body.get("messages") or [] if isinstance(m, dict)]
        text = " ".join(c if isinstance(c, str) else json.dumps(c) for c in contents)
    else:
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    words = text.split() or ["echo"]
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    reply = [words[i % len(words)] for i in range(max(1, int(limit)))]
    return reply, len(words)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body leave in one segment (flushed per SSE event)
    server: _EchoServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client went away mid-answer
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a benchmark aid
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            model = {"id": self.server.model, "object": "model", "owned_by": "echo"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"detail": "invalid JSON"})
            return
        chat = self.path == "/v1/chat/completions"
        if not chat and self.path != "/v1/completions":
            self._json(404, {"detail": "Not Found"})
            return
        if body.get("stream"):  # the access line before the answer: a stream may stay open
            self._access(200, "stream")
        reply, prompt_tokens = _words(body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reply),
            "total_tokens": prompt_tokens + len(reply),
        }
        base = {"id": str(uuid.uuid4()), "created": int(time.time()), "model": self.server.model}
        if body.get("stream"):
            self._stream(chat, reply, usage, base)
            return
        text = " ".join(reply)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        kind = "chat.completion" if chat else "text_completion"
        self._json(200, {**base, "object": kind, "choices": [choice], "usage": usage})
        self._access(200, f"{len(reply)} tokens")

    def _stream(self, chat: bool, reply: list[str], usage: dict[str, int], base: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(reply):
            text = word if i == 0 else " " + word
            choice = (
                {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            )
            self._chunk({**base, "object": kind, "choices": [choice]})
        last: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        ending: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        last |= ending
        self._chunk({**base, "object": kind, "choices": [last], "usage": usage})
        self._write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: dict[str, Any]) -> None:
        self._write(f"data: {json.dumps(data)}\n\n".encode())

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _access(self, status: int, note: str = "") -> None:
        """An access line, as uvicorn writes them."""
        client = self.client_address[0] if self.client_address else "-"
        request = f"{self.command} {self.path} {self.request_version}"
        line = f'INFO:     {client} - "{request}" {status}'
        self.server.write_log(f"{line} ({note})" if note else line)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        if status >= 400:
            self._access(status)
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    model = ""
    log_file: IO[str] | None = None
    log_lock = threading.Lock()

    def write_log(self, line: str) -> None:
        with self.log_lock:
            if self.log_file is not None and not self.log_file.closed:
                self.log_file.write(line + "\n")


class EchoEngine:
    """The echo engine in a background thread of the emulator's own process."""

    kind = "echo"

    def __init__(self, folder: Path, model_id: str, log_dir: Path | None = None) -> None:
        self.folder = folder
        self.served_model = model_id
        self._server = _EchoServer((LOOPBACK, 0), _Handler)
        self._server.model = model_id
        self._server.log_lock = threading.Lock()
        self.url = f"http://{LOOPBACK}:{self._server.server_port}"
        log_dir = log_dir or folder.parent
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"echo-{model_id}-{self._server.server_port}.log"
        self._server.log_file = open(self.log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115  # closed by stop()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"echo-{model_id}", daemon=True
        )
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return None  # in-process

    def start(self) -> None:
        self._server.write_log(
            f"INFO:     echo engine starting: {self.served_model} from {self.folder}"
        )
        self._thread.start()

    def wait_ready(self, timeout: float) -> None:
        """Listening since __init__; reads config.json (when there) as a real engine would."""
        config = self.folder / "config.json"
        if config.is_file():
            try:
                parsed = json.loads(config.read_text(errors="replace"))
                problem = "" if isinstance(parsed, dict) else "it is not a JSON object"
            except ValueError as exc:
                problem = f"it is not JSON ({exc})"
            if problem:
                line = f"ERROR:    cannot load the model: {config.name} is unusable: {problem}"
                self._server.write_log(line)
                raise EngineError(f"Model server (echo) could not start. Last error: {line}")
        self._server.write_log(
            f"INFO:     echo engine serving {self.served_model} on {self.url} (echoes the "
            "prompt's words; loads no weights)"
        )

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            if self._thread.is_alive():
                self._server.shutdown()
            self._server.server_close()
            self._server.write_log("INFO:     echo engine stopped")
            with self._server.log_lock:
                if self._server.log_file is not None:
                    self._server.log_file.close()

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pid": None,
            "url": self.url,
            "served_model": self.served_model,
            "log": str(self.log_path),
        }
