"""The Terraform configuration under infra/terraform, parsed with python-hcl2 (>= 8).

Strings come back without their quotes; expressions as "${...}". Blocks are lists of dicts
(a block may repeat), labels are keys: resource[TYPE][NAME] -> body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
# One expression that is nothing but a reference: "${google_pubsub_topic.tick.id}".
REFERENCE = re.compile(r"^\$\{([A-Za-z_][\w.\[\]\"-]*)\}$")


def single(blocks: Any) -> dict[str, Any]:
    """The one block of a block list (a block that may not repeat)."""
    assert isinstance(blocks, list) and len(blocks) == 1, blocks
    return blocks[0]


def reference(value: Any) -> str | None:
    """ "google_x.y.attr" for "${google_x.y.attr}", None for anything else."""
    if not isinstance(value, str):
        return None
    match = REFERENCE.match(value)
    return match.group(1) if match else None


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf) under a parsed value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


@dataclass
class Terraform:
    directory: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Terraform:
        config = cls(directory)
        paths = sorted(directory.glob("*.tf"))
        assert paths, f"no .tf files in {directory}"
        for path in paths:
            config.text[path.name] = path.read_text()
            with path.open() as handle:
                parsed = hcl2.load(handle, serialization_options=OPTIONS)
            config.files[path.name] = parsed
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert name not in config.resources.get(rtype, {}), (rtype, name)
                        config.resources.setdefault(rtype, {})[name] = body
            for block in parsed.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        config.data.setdefault(dtype, {})[name] = body
            for block in parsed.get("variable", []):
                config.variables.update(block)
            for block in parsed.get("output", []):
                config.outputs.update(block)
            for block in parsed.get("locals", []):
                for key, value in block.items():
                    assert key not in config.locals, f"local.{key} is defined twice"
                    config.locals[key] = value
        return config

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert name in self.resources.get(rtype, {}), f"no resource {rtype}.{name}"
        return self.resources[rtype][name]

    def all_text(self) -> str:
        return "\n".join(self.text.values())
