"""Build the Cloud Functions source archive: `python -m modeldrop.bundle` (`make bundle`).

The archive (default build/modeldrop-functions.zip) holds, at its root:
- the function modules of functions/ (main.py re-exports every target);
- the part of the `modeldrop` package the functions can reach: every module their imports
  lead to, lazy imports inside functions included, with its package data (JSON catalogs,
  the OpenAPI document, the dashboard's files in api/ui/). The local stack, the CLI and this
  builder are left out;
- requirements.txt: the runtime dependencies of pyproject.toml ([project.dependencies],
  no extras), pinned to the versions installed where the builder runs when they are.

Entries are sorted and timestamped 1980-01-01, so the same sources give the same bytes (and
Terraform, which names the uploaded object after its MD5, redeploys only on a change).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.metadata
import io
import re
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "modeldrop"
DEFAULT_OUTPUT = Path("build") / "modeldrop-functions.zip"
REQUIREMENTS = "requirements.txt"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SKIPPED_DIRS = {"__pycache__"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class BundleError(Exception):
    """The project is not laid out as the builder expects."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    files: tuple[str, ...]
    modules: tuple[str, ...]
    requirements: tuple[str, ...]

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def project_root() -> Path:
    """The checkout this module belongs to (it lives in shared/modeldrop/)."""
    return Path(__file__).resolve().parents[2]


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name an `import` anywhere in `source` names, relative imports resolved.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); callers keep the names
    that exist.
    """
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _package_modules(package_dir: Path) -> dict[str, Path]:
    """Module name -> file for every module of the package (packages map to __init__.py)."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        if SKIPPED_DIRS & set(path.relative_to(package_dir).parts):
            continue
        parts = (PACKAGE, *path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def reachable_modules(function_files: Iterable[Path], package_dir: Path) -> set[str]:
    """The package's modules the function files lead to, through imports at any depth."""
    available = _package_modules(package_dir)
    todo = [
        name
        for path in function_files
        for name in imported_modules(path.read_text(), path.stem, False)
        if name in available
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(p for p in parents if p in available)
        path = available[name]
        found = imported_modules(path.read_text(), name, path.name == "__init__.py")
        todo.extend(n for n in found if n in available)
    return seen


def runtime_requirements(pyproject: Path, pin: bool = True) -> list[str]:
    """[project.dependencies] of pyproject.toml, each pinned (`name==version`) when installed.

    A dependency that is not installed here, or carries a marker, keeps its specifier.
    """
    data = tomllib.loads(pyproject.read_text())
    lines = []
    for spec in data["project"].get("dependencies", []):
        match = _NAME.match(spec)
        if not match:
            raise BundleError(f"cannot read the dependency {spec!r} in {pyproject}")
        name = match.group(1)
        line = spec
        if pin and ";" not in spec:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                line = f"{name}=={importlib.metadata.version(name)}"
        lines.append(line)
    return lines


def _owner(path: Path) -> Path:
    """The package a data file belongs to: the nearest folder above it with an __init__.py
    (a data folder such as api/ui/ belongs to the package holding it)."""
    folder = path.parent
    while not (folder / "__init__.py").exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _package_files(package_dir: Path, modules: set[str]) -> Iterator[tuple[Path, str]]:
    """(file, archive name) of the chosen modules and of the data files of their packages."""
    available = _package_modules(package_dir)
    chosen = {available[name] for name in modules}
    packages = {path.parent for path in chosen if path.name == "__init__.py"}
    root = package_dir.parent
    for path in sorted(package_dir.rglob("*")):
        if not path.is_file() or SKIPPED_DIRS & set(path.relative_to(package_dir).parts):
            continue
        if path.suffix in SKIPPED_SUFFIXES:
            continue
        keep = path in chosen if path.suffix == ".py" else _owner(path) in packages
        if keep:
            yield path, path.relative_to(root).as_posix()


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def build(root: Path | None = None, output: Path | None = None, pin: bool = True) -> Bundle:
    """Write the archive and describe it."""
    root = (root or project_root()).resolve()
    functions_dir = root / "functions"
    package_dir = root / "shared" / PACKAGE
    pyproject = root / "pyproject.toml"
    for needed in (functions_dir / "main.py", package_dir / "__init__.py", pyproject):
        if not needed.exists():
            raise BundleError(f"{needed} is missing: is {root} a modeldrop checkout?")
    output = output or root / DEFAULT_OUTPUT
    if not output.is_absolute():
        output = root / output

    function_files = sorted(functions_dir.glob("*.py"))
    modules = reachable_modules(function_files, package_dir)
    requirements = runtime_requirements(pyproject, pin=pin)
    entries: dict[str, bytes] = {path.name: path.read_bytes() for path in function_files}
    for path, name in _package_files(package_dir, modules):
        entries[name] = path.read_bytes()
    header = (
        "# Runtime dependencies of the modeldrop functions, from pyproject.toml's\n"
        "# [project.dependencies] (no extras). Generated by `make bundle`.\n"
    )
    entries[REQUIREMENTS] = (header + "\n".join(requirements) + "\n").encode()

    output.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            _write(archive, name, entries[name])
    output.write_bytes(buffer.getvalue())
    return Bundle(output, tuple(sorted(entries)), tuple(sorted(modules)), tuple(requirements))


def _human(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modeldrop.bundle", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--root", type=Path, help="the checkout (default: this one)")
    parser.add_argument("--output", type=Path, help=f"archive path (default: {DEFAULT_OUTPUT})")
    parser.add_argument(
        "--no-pin", action="store_true", help="keep pyproject's specifiers instead of pinning"
    )
    args = parser.parse_args(argv)
    try:
        bundle = build(args.root, args.output, pin=not args.no_pin)
    except BundleError as exc:
        print(f"modeldrop.bundle: {exc}", file=sys.stderr)
        return 2
    print(
        f"{bundle.path}: {_human(bundle.size)} ({bundle.size} bytes), {len(bundle.files)} files, "
        f"{len(bundle.modules)} modeldrop modules, {len(bundle.requirements)} requirements"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
