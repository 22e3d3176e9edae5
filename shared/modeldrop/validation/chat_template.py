"""Find the folder's chat templates and check that each parses as Jinja, never rendering one.

Sources, in the order transformers prefers them: chat_template.jinja, chat_template.json
({"chat_template": ...}), tokenizer_config.json "chat_template", additional_chat_templates/*.jinja.
A "chat_template" value is a string or a list of {"name", "template"} (the one named "default"
is the default). Templates are untrusted: they are only parsed (`Environment.parse`, the lexer and
parser, no compilation and no rendering), in the sandboxed environment transformers renders
them in, with its extensions, so a template that fails here fails in serving too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from modeldrop.domain.findings import Finding, error, excerpt, info, warning
from modeldrop.domain.folder import FileInfo

TEMPLATE_KEY = "chat_template"
SAVE_HINT = (
    "Save the tokenizer of the chat model with tokenizer.save_pretrained(folder) (it writes "
    "chat_template.jinja), after checking that tokenizer.apply_chat_template works."
)


class _GenerationTag(Extension):
    """transformers' {% generation %}...{% endgeneration %} (assistant masks): parsed only."""

    tags = {"generation"}  # noqa: RUF012 (jinja2 declares it an instance attribute)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@dataclass(frozen=True)
class Template:
    source: str  # e.g. "chat_template.jinja" or "tokenizer_config.json chat_template 'tool_use'"
    file: str
    text: str


@dataclass
class Templates:
    """The templates that parse, the default first; `found` says whether any source had one."""

    valid: list[Template] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    found: bool = False

    @property
    def default(self) -> Template | None:
        return self.valid[0] if self.valid else None


def _invalid(source: str, file: str, problem: str) -> Finding:
    return error(
        "CHAT_TEMPLATE_INVALID",
        f"The chat template in {source} {problem}; chat completions would fail to render it.",
        file,
        SAVE_HINT,
    )


class _Collector:
    def __init__(self, limits: dict[str, Any]) -> None:
        self.max_chars = limits["chat_template_bytes"]
        self.max_templates = limits["chat_templates"]
        self.out = Templates()
        self.candidates: list[Template] = []
        self.skipped = 0
        self.env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag]
        )

    def bad(self, source: str, file: str, problem: str) -> None:
        self.out.found = True
        self.out.findings.append(_invalid(source, file, problem))

    def text(self, source: str, file: str, value: Any) -> None:
        self.out.found = True
        if len(self.candidates) >= self.max_templates:
            self.skipped += 1
        elif not isinstance(value, str):
            self.out.findings.append(_invalid(source, file, f"is {excerpt(value, 80)}, not text"))
        elif len(value) > self.max_chars:
            self.out.findings.append(
                _invalid(
                    source,
                    file,
                    f"is {len(value)} characters; modeldrop parses templates of at most "
                    f"{self.max_chars} (real ones are a few KiB)",
                )
            )
        else:
            self.candidates.append(Template(source, file, value))

    def value(self, source: str, file: str, value: Any) -> None:
        """A chat_template value: a string, or a list of {"name", "template"} objects."""
        if not isinstance(value, list):
            self.text(source, file, value)
            return
        if not value:
            self.bad(source, file, "is an empty list")
            return
        first = next(
            (i for i, e in enumerate(value) if isinstance(e, dict) and e.get("name") == "default"),
            0,
        )
        limit = self.max_templates
        shown = [value[first], *value[: min(first, limit)], *value[first + 1 : limit]]
        for entry in shown[: self.max_templates]:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                self.text(f"{source} {excerpt(entry['name'], 60)}", file, entry.get("template"))
            else:
                problem = f"holds {excerpt(entry, 80)}, not a {{name, template}} object"
                self.bad(source, file, problem)
        self.skipped += max(0, len(value) - self.max_templates)

    def parse_all(self) -> Templates:
        for template in self.candidates:
            try:
                self.env.parse(template.text)
            except TemplateSyntaxError as exc:
                message = excerpt(exc.message or "", 160)
                problem = f"is not valid Jinja at line {exc.lineno}: {message}"
                self.out.findings.append(_invalid(template.source, template.file, problem))
            except TemplateError as exc:
                problem = f"is not valid Jinja: {excerpt(exc.message or '', 160)}"
                self.out.findings.append(_invalid(template.source, template.file, problem))
            except RecursionError:
                problem = "nests too deeply to parse"
                self.out.findings.append(_invalid(template.source, template.file, problem))
            else:
                self.out.valid.append(template)
        if self.skipped:
            self.out.findings.append(
                info(
                    "CHAT_TEMPLATE_UNCHECKED",
                    f"{self.skipped} more chat templates are not parsed: modeldrop checks at "
                    f"most {self.max_templates}.",
                )
            )
        return self.out


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def collect_templates(
    files: list[tuple[FileInfo, bytes | Finding]],
    tokenizer_config: dict[str, Any] | None,
    tokenizer_config_name: str,
    limits: dict[str, Any],
) -> Templates:
    """Every template of the folder, checked. `files` are the template files as read (or the
    finding their read gave), in inventory order: root files first, then the nested ones."""
    collect = _Collector(limits)
    root = [(f, d) for f, d in files if "/" not in f.name]
    nested = [(f, d) for f, d in files if "/" in f.name]

    def read_file(file: FileInfo, data: bytes | Finding) -> None:
        if isinstance(data, Finding):
            collect.out.found = True
            collect.out.findings.append(data)
            return
        text = _decode(data)
        if text is None:
            collect.bad(file.name, file.name, "is not UTF-8 text")
        elif file.name.endswith(".json"):
            value, problem = _template_of(text)
            if problem:
                collect.bad(file.name, file.name, problem)
            else:
                collect.value(f"{file.name} {TEMPLATE_KEY}", file.name, value)
        else:
            collect.text(file.name, file.name, text)

    for file, data in root:
        read_file(file, data)
    if tokenizer_config is not None and tokenizer_config.get(TEMPLATE_KEY) is not None:
        source = f"{tokenizer_config_name} {TEMPLATE_KEY}"
        collect.value(source, tokenizer_config_name, tokenizer_config[TEMPLATE_KEY])
    for file, data in nested:
        read_file(file, data)
    templates = collect.parse_all()
    if not templates.found:
        templates.findings.append(
            warning(
                "CHAT_TEMPLATE_MISSING",
                "The folder has no chat template (no chat_template in tokenizer_config.json, no "
                "chat_template.jinja, chat_template.json or additional_chat_templates/): chat "
                "completions requests will fail; predict with a raw prompt still works.",
                tokenizer_config_name,
                "Save the tokenizer of the instruct/chat model (tokenizer.save_pretrained writes "
                "chat_template.jinja), or set tokenizer.chat_template before saving.",
            )
        )
    return templates


def _template_of(text: str) -> tuple[Any, str | None]:
    """The "chat_template" value of a chat_template.json text, or what makes it unusable."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None, "is not valid JSON"
    if not isinstance(document, dict):
        return None, f"holds a JSON {type(document).__name__}, not an object"
    if TEMPLATE_KEY not in document:
        return None, f"has no {TEMPLATE_KEY!r} key"
    return document[TEMPLATE_KEY], None
