"""`make demo`: a tiny model goes from a folder on disk to answering a chat, on the local stack.

Trains a tiny model to answer a few questions (once: answering_model caches it), brings the
stack up, uploads the folder as a user would, prints each state transition as its notification
arrives, the status JSON, the question of the user's document and the answer streamed through
the api, and the notifications a subscriber received, then stops the stack. Exit 0 only if the
model reached DEPLOYED and answered.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from modeldrop.local.answering_model import (
    DEFAULT_CACHE,
    answering_model,
    find_cached,
    load_answers,
    training_info,
)
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
    cache_dir: Path = DEFAULT_CACHE,
    timeout: float = 600,
) -> int:
    from modeldrop.adapters.gcs_folder import default_client
    from modeldrop.local.uploader import upload_folder

    folder = demo_model(cache_dir)
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
            answered = chat(urljoin(status_url, status["links"]["chat"]), folder)
            time.sleep(1)
            received = [summary(m) for m in subscriber.messages]
            print(f"7. notifications received by the subscriber ({len(received)}):")
            print(json.dumps(received, indent=2))
            return 0 if answered else 1
        finally:
            subscriber.close()


def demo_model(cache_dir: Path) -> Path:
    """The folder of the tiny model that memorised the demo's answers, trained if need be."""
    questions = len(load_answers())
    if cached := find_cached(cache_dir):
        print(f"1. a tiny Llama-architecture model that answers {questions} questions: {cached}")
        print("   (trained by an earlier run; reused)")
        return cached
    print(f"1. training a tiny Llama-architecture model to answer {questions} questions")
    folder = answering_model(cache_dir)
    trained = training_info(folder)
    print(
        f"   trained in {trained['seconds']:.1f} s ({trained['steps']} steps, loss "
        f"{trained['loss']:.4f}); cached for the next run: {folder}"
    )
    return folder


def chat(url: str, folder: Path) -> bool:
    """The document's question as one streamed chat completion through the api, the answer
    printed as the chunks arrive."""
    pairs = load_answers()
    asked, others = pairs[0], pairs[1:]
    body = {
        "messages": [{"role": "user", "content": asked.question}],
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
    }
    print(f"6. streamed chat completion through the api: POST {url}")
    print(f"   question: {asked.question}")
    chunks, text = 0, ""
    print("   answer:   ", end="", flush=True)
    with requests.post(url, json=body, stream=True, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            chunks += 1
            text += delta
            print(delta, end="", flush=True)
    trained = training_info(folder)
    print()
    if text != asked.answer:
        print(f"   (not the memorised answer, which is {asked.answer!r})")
    print(
        f"   ({chunks} chunks from a {trained['layers']}-layer model trained for "
        f"{trained['seconds']:.1f} s on {len(pairs)} questions: it memorised the answers and\n"
        "   knows nothing else. The other questions: "
        + ", ".join(f'"{qa.question}"' for qa in others)
        + ")"
    )
    return chunks > 0


if __name__ == "__main__":
    sys.exit(run())
