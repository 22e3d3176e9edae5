"""Forward query bodies to an engine over HTTP: unary JSON, or SSE passed through as it comes.

Requests the engine rejects for unknown fields (transformers serve answers 422) are retried
without those fields, with a log line, so a body that works on Google Cloud works here too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from modeldrop.local.vertex.engines import Engine
from modeldrop.local.vertex.errors import RpcError
from modeldrop.local.vertex.translate import (
    COMPLETIONS,
    completion_body,
    engine_body,
    instances,
    prediction,
    rejected_fields,
)
from modeldrop.sse import ending_with_done

log = logging.getLogger("modeldrop.vertex")

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 600.0
POOL_SIZE = 256  # connections kept per engine: one per concurrent stream
MAX_RETRIES = 3


class EngineClient:
    """HTTP to engines through one pooled session (safe to share between request threads)."""

    def __init__(self) -> None:
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=POOL_SIZE)
        self.session.mount("http://", adapter)

    def post(
        self, engine: Engine, path: str, body: dict[str, Any], stream: bool = False
    ) -> requests.Response:
        """POST `body` translated for `engine`; drops fields the engine rejects and retries."""
        payload = engine_body(body, engine.kind, engine.served_model, engine.folder)
        for _ in range(MAX_RETRIES):
            response = self._send(engine, path, payload, stream)
            if response.status_code != 422:
                return response
            text = response.text  # a 422 is short; reading it ends a streamed response
            dropped = rejected_fields(422, text) & payload.keys()
            if not dropped:
                return response
            log.warning(
                "%s engine rejected %s; retrying without them", engine.kind, sorted(dropped)
            )
            payload = {k: v for k, v in payload.items() if k not in dropped}
        return response

    def predict(self, engine: Engine, body: Any) -> list[str]:
        """:predict: each instance as one completion, answered in Model Garden's format."""
        predictions = []
        for index, instance in enumerate(instances(body, ":predict")):
            with self.post(engine, COMPLETIONS, completion_body(instance, False)) as response:
                if response.status_code != 200:
                    raise RpcError(
                        f"The model server answered {response.status_code} to instances[{index}]: "
                        f"{response.text[:1000]}",
                        http_status=400 if response.status_code < 500 else 500,
                    )
                predictions.append(prediction(instance, response.json()))
        return predictions

    def _send(
        self, engine: Engine, path: str, payload: dict[str, Any], stream: bool
    ) -> requests.Response:
        try:
            return self.session.post(
                engine.url + path,
                json=payload,
                stream=stream,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except requests.Timeout as exc:
            raise RpcError(
                f"The model server ({engine.kind}) did not answer in time.", http_status=504
            ) from exc
        except requests.RequestException as exc:
            raise RpcError(
                f"The model server ({engine.kind} at {engine.url}) is not answering: {exc}. "
                f"Check its log: {engine.info().get('log', 'in-process')}.",
                http_status=503,
            ) from exc

    def close(self) -> None:
        self.session.close()


def relay(response: requests.Response) -> Iterator[bytes]:
    """The engine's SSE bytes as they arrive, ending with `data: [DONE]` as vLLM's do."""
    try:
        yield from ending_with_done(
            chunk for chunk in response.iter_content(chunk_size=None) if chunk
        )
    except requests.RequestException as exc:
        log.warning("engine stream broke off: %s", exc)
    finally:
        response.close()
