"""Hostile folders (the corpus of tests/fixtures/hostile_folders.py): wall time and
peak memory of validating each one, each in a fresh process.

The folder is built first; a child process then imports modeldrop, validates it once and
reports its wall time and its peak resident memory (VmHWM, which starts afresh at exec, unlike
ru_maxrss; the interpreter and imports included). Targets: every folder under 5 s and 1 GiB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.fixtures.hostile_folders import CORPUS
from tests.fixtures.model_folders import write_valid

MAX_SECONDS = 5.0
MAX_BYTES = 2**30
CHILD = """
import json, sys, time
from modeldrop.adapters.local_folder import LocalFolder
from modeldrop.validation.validator import validate_folder
def high_water():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024
before = high_water()
started = time.perf_counter()
verdict = validate_folder(LocalFolder(sys.argv[1]))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_bytes": high_water(), "import_bytes": before,
                  "verdict": verdict.as_dict()["verdict"],
                  "verdict_bytes": len(json.dumps(verdict.as_dict()))}))
"""


def measure(name: str, workdir: Path) -> dict:
    mutate, _, _ = CORPUS[name]
    root = write_valid(workdir / name)
    mutate(root)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=True
    )
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return {"folder": name, **json.loads(child.stdout)}


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        rows = [measure(name, Path(tmp)) for name in sorted(CORPUS)]
    slowest = sorted(rows, key=lambda r: -r["seconds"])[:5]
    largest = sorted(rows, key=lambda r: -r["peak_bytes"])[:5]
    for label, picked in (("slowest", slowest), ("largest", largest)):
        print(f"   {label}:")
        for r in picked:
            print(
                f"     {r['folder']:<40} {r['seconds'] * 1000:8.0f} ms  "
                f"peak {r['peak_bytes'] / 2**20:6.0f} MiB (imports {r['import_bytes'] / 2**20:.0f})"
                f"  {r['verdict']}, verdict {r['verdict_bytes']} B"
            )
    worst_seconds = max(r["seconds"] for r in rows)
    worst_bytes = max(r["peak_bytes"] for r in rows)
    return {
        "folders": len(rows),
        "rows": rows,
        "targets": {
            f"every hostile folder under {MAX_SECONDS:.0f} s (worst {worst_seconds:.2f} s)": (
                worst_seconds < MAX_SECONDS
            ),
            f"every hostile folder under 1 GiB peak (worst {worst_bytes / 2**20:.0f} MiB)": (
                worst_bytes < MAX_BYTES
            ),
        },
    }
