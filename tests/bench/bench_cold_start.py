"""Cold start: import time of each function module in fresh interpreters, vs functions_framework.

Each probe is a new `python -c` subprocess that times (perf_counter, interpreter start-up left
out) either `import functions_framework` or loading functions/NAME.py the way
functions-framework does (spec_from_file_location with the functions folder on sys.path), then
reports which heavy SDKs ended up in sys.modules. Runs interleave the modules so drift cancels;
medians of RUNS. Also the api's first request (GET /healthz, which builds the Firestore, Pub/Sub
and Storage clients) in a fresh process, versus its second, through Flask's test client.
Targets: validate and api imports <= 3x functions_framework; the api imports none of
aiplatform/torch/transformers; deploy does not import aiplatform when imported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RUNS = 15
FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
MODULES = ("validate", "api", "deploy", "reconcile", "main")
HEAVY = (
    "google.cloud.aiplatform",
    "google.cloud.aiplatform_v1beta1",
    "vertexai",
    "torch",
    "transformers",
    "google.cloud.firestore",
    "google.cloud.pubsub_v1",
    "google.cloud.storage",
)

PROBE = """
import importlib.util, json, sys, time
name, directory, heavy = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
started = time.perf_counter()
if name == "functions_framework":
    import functions_framework
else:
    sys.path.append(directory)
    spec = importlib.util.spec_from_file_location(
        name, f"{directory}/{name}.py", submodule_search_locations=[directory]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
elapsed = time.perf_counter() - started
print(json.dumps({"s": elapsed, "loaded": [h for h in heavy if h in sys.modules],
                  "modules": len(sys.modules)}))
"""

FIRST_REQUEST = """
import json, sys, time
started = time.perf_counter()
from functions_framework import create_app
app = create_app(target="api", source=sys.argv[1], signature_type="http")
imported = time.perf_counter()
client = app.test_client()
times = []
for _ in range(3):
    t = time.perf_counter()
    response = client.get("/healthz")
    assert response.status_code == 200, response.data
    times.append(time.perf_counter() - t)
print(json.dumps({"load_s": imported - started, "requests_s": times,
                  "loaded": [h for h in sys.argv[2].split(",") if h in sys.modules]}))
"""

# client construction only: nothing listens there and nothing is called
FAKE_ENV = {
    "GOOGLE_CLOUD_PROJECT": "bench-cold-start",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
    "MODELDROP_BUCKET": "bench",
}


def _probe(name: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, name, str(FUNCTIONS_DIR), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _first_request() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, str(FUNCTIONS_DIR / "api.py"), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, **FAKE_ENV},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict:
    names = ("functions_framework", *MODULES)
    for name in names:  # warm the OS file cache and __pycache__ once
        _probe(name)
    samples: dict[str, list[float]] = {name: [] for name in names}
    loaded: dict[str, set[str]] = {name: set() for name in names}
    modules: dict[str, int] = {}
    for i in range(RUNS):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            result = _probe(name)
            samples[name].append(result["s"])
            loaded[name].update(result["loaded"])
            modules[name] = result["modules"]
    ms = {name: statistics.median(v) * 1000 for name, v in samples.items()}
    base = ms["functions_framework"]
    ratio = {name: ms[name] / base for name in names}

    first = [_first_request() for _ in range(3)]
    first_ms = statistics.median(r["requests_s"][0] for r in first) * 1000
    second_ms = statistics.median(r["requests_s"][1] for r in first) * 1000
    load_ms = statistics.median(r["load_s"] for r in first) * 1000
    after_first = sorted({h for r in first for h in r["loaded"]})

    print(
        f"   {'import (median of ' + str(RUNS) + ')':28}{'ms':>8}{'x ff':>7}{'modules':>9}"
        "  heavy SDKs in sys.modules"
    )
    for name in names:
        label = name if name == "functions_framework" else f"functions/{name}.py"
        heavy = ", ".join(sorted(loaded[name])) or "-"
        print(f"   {label:28}{ms[name]:8.1f}{ratio[name]:7.2f}{modules[name]:9d}  {heavy}")
    print(
        f"   api under functions-framework: load {load_ms:.0f} ms, first GET /healthz "
        f"{first_ms:.0f} ms (builds the clients), second {second_ms:.2f} ms"
    )
    print(f"   loaded after the first request: {', '.join(after_first)}")

    api_heavy = loaded["api"] & {
        "google.cloud.aiplatform",
        "google.cloud.aiplatform_v1beta1",
        "vertexai",
        "torch",
        "transformers",
    }
    deploy_heavy = loaded["deploy"] & {
        "google.cloud.aiplatform",
        "google.cloud.aiplatform_v1beta1",
        "vertexai",
    }
    return {
        "runs": RUNS,
        "import_ms": ms,
        "ratio_to_functions_framework": ratio,
        "modules_loaded": modules,
        "heavy_modules": {name: sorted(v) for name, v in loaded.items()},
        "api_load_ms": load_ms,
        "api_first_request_ms": first_ms,
        "api_second_request_ms": second_ms,
        "api_heavy_modules_after_first_request": after_first,
        "targets": {
            "validate import <= 3x functions_framework": ratio["validate"] <= 3,
            "api import <= 3x functions_framework": ratio["api"] <= 3,
            "api does not import aiplatform/torch/transformers": not api_heavy,
            "deploy does not import aiplatform at import": not deploy_heavy,
        },
    }
