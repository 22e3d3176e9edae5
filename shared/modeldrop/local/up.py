"""`modeldrop up`: run the local stack until Ctrl-C (SIGINT) or SIGTERM, then stop everything."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

from modeldrop.local.stack import LocalStack, StackConfig

DEMO_MODEL = "tiny-llama"


def run(config: StackConfig, demo_model: bool = False) -> int:
    """Run the stack until a signal; with `demo_model`, upload the demo's answering model (the
    one `make demo` trains) as DEMO_MODEL once it is up, for the dashboard and `modeldrop chat`."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print("starting the local stack ...", flush=True)
        with LocalStack(config) as stack:
            info = stack.connection()
            print(json.dumps({k: v for k, v in info.items() if k != "settings"}, indent=2))
            print(f"\nconnection details: {Path(config.state_dir) / 'stack.json'}")
            print(
                f"upload a model folder to gs://{info['bucket']}/{info['root_prefix']}<name>/ "
                f"(STORAGE_EMULATOR_HOST={info['storage_emulator_host']}), then poll "
                f"{info['api_url']}/v1/models/<name> or run `modeldrop status <name> --watch`."
            )
            if demo_model:
                _upload_demo_model(info)
            print("Ctrl-C stops everything.", flush=True)
            stop.wait()
            print("\nstopping ...", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped.")
    return 0


def _upload_demo_model(info: dict[str, str]) -> None:
    from modeldrop.adapters.gcs_folder import default_client
    from modeldrop.local.answering_model import DEFAULT_CACHE, answering_model
    from modeldrop.local.uploader import upload_folder

    folder = answering_model(DEFAULT_CACHE)
    upload_folder(default_client(), folder, info["bucket"], f"{info['root_prefix']}{DEMO_MODEL}")
    print(
        f"uploaded the demo's answering model as {DEMO_MODEL}: `modeldrop status {DEMO_MODEL} "
        f'--watch`, then `modeldrop chat {DEMO_MODEL} "How to tell the time by looking at the '
        f'sky?"`, or open {info["api_url"]}/ui',
        flush=True,
    )
