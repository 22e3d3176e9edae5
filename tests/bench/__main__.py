"""Run the benchmarks: `python -m tests.bench [name ...]` (default: all)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import tests.bench as package

RESULTS = Path(".modeldrop/bench")


def main(names: list[str]) -> int:
    available = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )
    chosen = [f"bench_{n.removeprefix('bench_')}" for n in names] or available
    failed = 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"== {name}: {module.__doc__.strip().splitlines()[0]}")
        result = module.run()
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
        for target, met in result.get("targets", {}).items():
            print(f"   target {'MET ' if met else 'MISSED'}  {target}")
            failed += not met
    print(f"results in {RESULTS}/; {failed} target(s) missed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
