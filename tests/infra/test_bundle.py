"""The Cloud Functions source archive (`make bundle`): contents, requirements, and that it runs.

The slow test installs the archive's requirements.txt into a fresh virtualenv (cached under
build/, keyed by the requirements and the Python version) and, in that environment alone,
imports everything the archive holds, every import statement in it (lazy ones included),
loads each target from main.py the way Cloud Functions does, and delivers a Pub/Sub push
envelope to the deploy target as the deploy subscription does.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from modeldrop import bundle
from tests.infra.conftest import ROOT

HEAVY = ("torch", "transformers")
VENV_DIR = ROOT / "build" / "bundle-venv"

# Runs with the interpreter under test: argv[1] is the extracted archive, argv[2] "isolated"
# when the archive's modeldrop must be the one imported. Prints one JSON report.
PROBE = r"""
import ast, base64, importlib, importlib.util, json, sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
isolated = sys.argv[2] == "isolated"
sys.path.insert(0, str(root))
report = {"failures": []}

def attempt(label, action):
    try:
        action()
    except Exception as exc:  # report every failure, not just the first
        report["failures"].append(f"{label}: {type(exc).__name__}: {exc}")

# 1. every module of the archive
files = sorted(root.rglob("*.py"))
for path in files:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    attempt(f"import {'.'.join(parts)}", lambda n=".".join(parts): importlib.import_module(n))

# 2. every import statement in it, at any depth (the SDKs are imported lazily)
def check_from(module, names):
    mod = importlib.import_module(module)
    for name in names:
        if name != "*" and not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")

for path in files:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                attempt(f"{path.name}: import {alias.name}",
                        lambda n=alias.name: importlib.import_module(n))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            names = [a.name for a in node.names]
            attempt(f"{path.name}: from {node.module} import {', '.join(names)}",
                    lambda m=node.module, n=names: check_from(m, n))

# 3. main.py as Cloud Functions loads it, for each target (deploy is HTTP-deployed)
from functions_framework import create_app
for target, signature in (("validate", "cloudevent"), ("deploy", "http"),
                          ("reconcile", "cloudevent"), ("api", "http")):
    attempt(f"create_app {target}",
            lambda t=target, s=signature: create_app(target=t, source=str(root / "main.py"),
                                                     signature_type=s))

# 4. a push delivery from the modeldrop-deploy subscription reaches on_validated
import modeldrop.bootstrap, modeldrop.service.deploy
from modeldrop.service.ports import DeployError
calls = []
def on_validated(ctx, deployment_id):
    calls.append(deployment_id)
    if deployment_id == "retryable":
        raise DeployError("Vertex AI unavailable", code="VERTEX_UNAVAILABLE", retryable=True)
    if deployment_id == "poison":
        raise RuntimeError("a bug, not an outage")
modeldrop.bootstrap.context = lambda: "context"
modeldrop.service.deploy.on_validated = on_validated
app = create_app(target="deploy", source=str(root / "main.py"), signature_type="http")
client = app.test_client()
statuses = {}
for deployment_id in ("dep-1", "retryable", "poison"):
    data = json.dumps({"deployment_id": deployment_id}).encode()
    envelope = {
        "message": {"data": base64.b64encode(data).decode(), "messageId": "1",
                    "attributes": {"deployment_id": deployment_id},
                    "publishTime": "2026-01-01T00:00:00Z"},
        "subscription": "projects/p/subscriptions/modeldrop-deploy",
    }
    response = client.post("/projects/p/topics/modeldrop-validated", json=envelope)
    statuses[deployment_id] = response.status_code
report["push"] = {"calls": calls, "statuses": statuses}

import modeldrop
report["modeldrop"] = modeldrop.__file__
report["heavy"] = {n: importlib.util.find_spec(n) is not None for n in ("torch", "transformers")}
report["isolated"] = isolated
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> bundle.Bundle:
    return bundle.build(output=tmp_path_factory.mktemp("bundle") / "functions.zip")


@pytest.fixture(scope="module")
def extracted(built: bundle.Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(target)
    return target


def _requirement_names(lines: list[str] | tuple[str, ...]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            assert match, line
            names.add(re.sub(r"[-_.]+", "-", match.group(0)).lower())
    return names


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_layout(built: bundle.Bundle) -> None:
    files = set(built.files)
    for name in ("main.py", "api.py", "deploy.py", "reconcile.py", "validate.py"):
        assert name in files, f"{name} must be at the archive's root"
    assert {"requirements.txt", "modeldrop/__init__.py", "modeldrop/bootstrap.py"} <= files
    # package data the code reads through importlib.resources
    assert "modeldrop/catalog/base_models.json" in files
    assert "modeldrop/api/openapi.json" in files
    # the dashboard's files (a data folder inside the api package), as GET /ui serves them
    from modeldrop.api.ui import ASSETS, PAGE

    assert {f"modeldrop/api/ui/{name}" for name in (PAGE, *ASSETS)} <= files
    # what the functions do not need stays out
    assert not [f for f in files if f.startswith("modeldrop/local/")]
    assert not {"modeldrop/cli.py", "modeldrop/bundle.py", "pyproject.toml"} & files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert built.size < 5 * 1024 * 1024, f"the archive grew to {built.size} bytes"


def test_requirements_are_the_runtime_dependencies(built: bundle.Bundle) -> None:
    with zipfile.ZipFile(built.path) as archive:
        lines = archive.read("requirements.txt").decode().splitlines()
    runtime = _requirement_names(_pyproject()["project"]["dependencies"])
    assert _requirement_names(lines) == runtime
    extras = set()
    for group in _pyproject()["project"]["optional-dependencies"].values():
        extras |= _requirement_names(group)
    assert not (_requirement_names(lines) & (extras - runtime)), "an extra leaked in"
    for line in built.requirements:
        if ";" not in line:
            assert "==" in line, f"{line} is not pinned (is it installed here?)"


def test_no_torch_or_transformers(built: bundle.Bundle) -> None:
    assert not (_requirement_names(built.requirements) & set(HEAVY))
    for name in built.files:
        assert not any(part.startswith(HEAVY) for part in Path(name).parts), name


def test_every_modeldrop_import_is_bundled(extracted: Path) -> None:
    """Leaving modules out is safe only if nothing in the archive imports them."""
    bundled = {
        ".".join(p.relative_to(extracted).with_suffix("").parts).removesuffix(".__init__")
        for p in extracted.rglob("*.py")
    }
    source = {
        ".".join(p.relative_to(ROOT / "shared").with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "shared" / "modeldrop").rglob("*.py")
    }
    for path in extracted.rglob("*.py"):
        module = ".".join(path.relative_to(extracted).with_suffix("").parts)
        names = bundle.imported_modules(
            path.read_text(), module.removesuffix(".__init__"), path.name == "__init__.py"
        )
        missing = {n for n in names if n in source and n not in bundled}
        assert not missing, f"{path.relative_to(extracted)} imports unbundled {sorted(missing)}"


def test_build_is_reproducible(built: bundle.Bundle, tmp_path: Path) -> None:
    again = bundle.build(output=tmp_path / "again.zip")
    assert again.path.read_bytes() == built.path.read_bytes()


def test_cli_prints_the_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bundle.main(["--output", str(tmp_path / "out.zip")]) == 0
    out = capsys.readouterr().out
    size = (tmp_path / "out.zip").stat().st_size
    assert f"({size} bytes)" in out and "KiB" in out


def _probe(python: Path | str, extracted: Path, isolated: bool) -> dict:
    with_probe = extracted.parent / f"{extracted.name}-probe.py"
    with_probe.write_text(PROBE)
    mode = "isolated" if isolated else "shared"
    result = subprocess.run(
        [str(python), "-I", str(with_probe), str(extracted), mode],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=extracted,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_report(report: dict) -> None:
    assert report["failures"] == [], "\n".join(report["failures"])
    # a push envelope becomes the CloudEvent deploy reads; a retryable error is a 5xx, so
    # Pub/Sub redelivers it (and eventually dead-letters it); any other exception is
    # acknowledged, never a redelivery loop
    assert report["push"] == {
        "calls": ["dep-1", "retryable", "poison"],
        "statuses": {"dep-1": 200, "retryable": 500, "poison": 200},
    }


def test_bundle_runs_with_the_dev_environment(extracted: Path) -> None:
    """Fast check of the same probe with this interpreter (its site-packages are richer)."""
    _check_report(_probe(sys.executable, extracted, isolated=False))


def _fresh_venv(requirements: bytes) -> Path:
    """A virtualenv with only the archive's requirements, reused while they are unchanged."""
    key = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:16]
    stamp = VENV_DIR / ".modeldrop-requirements"
    python = VENV_DIR / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == key:
        return python
    shutil.rmtree(VENV_DIR, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True, timeout=300)
    requirements_file = VENV_DIR / "requirements.txt"
    requirements_file.write_bytes(requirements)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements_file)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stderr[-4000:]}"
    stamp.write_text(key)
    return python


@pytest.mark.slow
def test_bundle_runs_from_its_requirements_alone(built: bundle.Bundle, extracted: Path) -> None:
    with zipfile.ZipFile(built.path) as archive:
        python = _fresh_venv(archive.read("requirements.txt"))
    report = _probe(python, extracted, isolated=True)
    _check_report(report)
    assert Path(report["modeldrop"]).is_relative_to(extracted), report["modeldrop"]
    assert report["heavy"] == {"torch": False, "transformers": False}, "pulled in by a dependency"


def test_probe_covers_lazy_imports() -> None:
    """The probe walks import statements at any depth: the Vertex SDK import is one."""
    deployer = ROOT / "shared" / "modeldrop" / "adapters" / "vertex_deployer.py"
    lazy = [
        node.module
        for node in ast.walk(ast.parse(deployer.read_text()))
        if isinstance(node, ast.ImportFrom) and node.col_offset > 0
    ]
    assert "google.cloud" in lazy
