"""`make demo`: a tiny model goes from a folder on disk to answering a chat, on the local stack.

Builds a tiny model, brings the stack up, uploads the folder as a user would, prints each state
transition as its notification arrives, the status JSON, one chat completion and the
notifications a subscriber received, then stops the stack. Exit 0 only if the model reached
DEPLOYED and answered.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from modeldrop.local.stack import LocalStack, StackConfig
from modeldrop.local.subscriber import EventSubscriber

FINAL_STATES = {"DEPLOYED", "REJECTED", "FAILED"}
MODEL = "tiny-llama"


def print_event(message: Any) -> None:
    from modeldrop.adapters.pubsub_events import parse_event

    event = parse_event(message)
    state = message.attributes.get("state", "?")
    print(f"  event  {event['type']:<40} {state:<11} {event['subject']}", flush=True)


def summary(message: Any) -> dict[str, str]:
    return {
        "ce-id": message.attributes.get("ce-id", ""),
        "ce-type": message.attributes.get("ce-type", ""),
        "state": message.attributes.get("state", ""),
        "subject": message.attributes.get("ce-subject", ""),
    }


def settled(messages: list[Any]) -> bool:
    return any(m.attributes.get("state") in FINAL_STATES for m in messages)


def run(
    config: StackConfig | None = None,
    workdir: Path = Path(".modeldrop/demo"),
    timeout: float = 600,
) -> int:
    from modeldrop.adapters.gcs_folder import default_client
    from modeldrop.local.tiny_model import build_tiny_model
    from modeldrop.local.uploader import upload_folder

    print("1. building a tiny Llama-architecture model")
    folder = build_tiny_model(workdir / MODEL, "llama")
    print("2. starting the local stack (emulators, Vertex AI emulator, functions)")
    started = time.monotonic()
    with LocalStack(config or StackConfig()) as stack:
        info = stack.connection()
        print(f"   up in {time.monotonic() - started:.1f} s; api at {info['api_url']}")
        subscriber = EventSubscriber(
            info["project"], info["events_topic"], "modeldrop-demo", on_message=print_event
        )
        try:
            target = f"gs://{info['bucket']}/{info['root_prefix']}{MODEL}/"
            print(f"3. uploading {folder} to {target}")
            upload_folder(default_client(), folder, info["bucket"], f"{info['root_prefix']}{MODEL}")
            uploaded = time.monotonic()
            print("4. waiting for the deployment (state transitions as notifications arrive)")
            try:
                subscriber.wait_for(settled, timeout)
            except TimeoutError:
                print(f"   no final state within {timeout:.0f} s")
                return 1
            status_url = f"{info['api_url']}/v1/models/{MODEL}"
            status = requests.get(status_url, timeout=30).json()
            print(f"   {status['state']} {time.monotonic() - uploaded:.1f} s after the upload")
            print(f"5. status URL: {urljoin(status_url, status['links']['self'])}")
            print(json.dumps(status, indent=2))
            if status["state"] != "DEPLOYED":
                return 1
            answered = chat(urljoin(status_url, status["links"]["chat"]))
            time.sleep(1)
            received = [summary(m) for m in subscriber.messages]
            print(f"7. notifications received by the subscriber ({len(received)}):")
            print(json.dumps(received, indent=2))
            return 0 if answered else 1
        finally:
            subscriber.close()


def chat(url: str) -> bool:
    """One streamed chat completion through the api, printed as the chunks arrive."""
    body = {
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    print(f"6. streamed chat completion through the api: POST {url}")
    chunks = 0
    print("   ", end="")
    with requests.post(url, json=body, stream=True, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            chunks += 1
            print(repr(delta), end=" ", flush=True)
    print(f"\n   {chunks} chunks (a tiny random model: the words mean nothing)")
    return chunks > 0


if __name__ == "__main__":
    sys.exit(run())
