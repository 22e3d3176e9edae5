"""`modeldrop up`: run the local stack until Ctrl-C (SIGINT) or SIGTERM, then stop everything."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

from modeldrop.local.stack import LocalStack, StackConfig


def run(config: StackConfig) -> int:
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
            print("Ctrl-C stops everything.", flush=True)
            stop.wait()
            print("\nstopping ...", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped.")
    return 0
