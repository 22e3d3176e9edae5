"""Validate a model folder from its listing and file headers: the verdict of DESIGN section 4."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from modeldrop import catalog
from modeldrop.domain.findings import (
    Finding,
    MachineSpec,
    Severity,
    Verdict,
    error,
    excerpt,
    info,
    internal_error,
    warning,
)
from modeldrop.domain.folder import FileInfo, Folder
from modeldrop.errors import AccessError
from modeldrop.validation import quantization, sizing
from modeldrop.validation.architecture import BasePolicy, check_architecture
from modeldrop.validation.index_file import IndexFileError, check_index, parse_index
from modeldrop.validation.inventory import Inventory, take_inventory
from modeldrop.validation.model_config import ConfigError, ModelConfig, parse_config
from modeldrop.validation.overrides import Overrides, parse_overrides
from modeldrop.validation.pickle_scan import scan_pickle_weights
from modeldrop.validation.safetensors_header import (
    HeaderError,
    HeaderPrefix,
    SafetensorsHeader,
    parse_header,
    read_prefix,
    read_rest,
    tensor_count_bound,
)
from modeldrop.validation.serving_checks import check_serving, with_adapter_check

MAX_WORKERS = 16
SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


class _TooLarge(Exception):
    pass


def _read_bounded(folder: Folder, file: FileInfo, limit: int) -> bytes:
    if file.size > limit:
        raise _TooLarge
    return folder.read_range(file.name, 0, limit + 1)


def _too_large(file: FileInfo, limit: int) -> Finding:
    return error(
        "FILE_TOO_LARGE",
        f"{file.name} is {file.size} bytes; files of this kind are at most {limit} bytes.",
        file.name,
        "Upload the file written by save_pretrained(); this one is not a model metadata file.",
    )


class _Reads:
    """Every ranged read validation needs, submitted at once and collected as futures."""

    def __init__(self, pool: ThreadPoolExecutor, folder: Folder, inv: Inventory) -> None:
        limits = catalog.file_rules()["limits"]
        self.limits = limits
        small = [
            (inv.config, limits["config_bytes"]),
            (inv.tokenizer_config, limits["tokenizer_config_bytes"]),
            (inv.overrides, limits["overrides_bytes"]),
            (inv.generation_config, limits["generation_config_bytes"]),
            (inv.adapter_config, limits["adapter_config_bytes"]),
            (inv.tokenizer_json, limits["tokenizer_json_bytes"]),
            *((t, limits["chat_template_bytes"]) for t in inv.chat_templates),
            *((i, limits["index_bytes"]) for i in inv.indexes),
        ]
        self.small: dict[str, Future[bytes]] = {
            f.name: pool.submit(_read_bounded, folder, f, limit) for f, limit in small if f
        }
        self.prefixes: dict[str, Future[HeaderPrefix]] = {
            f.name: pool.submit(read_prefix, folder, f) for f in inv.safetensors
        }
        self.pickles: dict[str, Future[list[Finding]]] = {
            f.name: pool.submit(scan_pickle_weights, folder, f) for f in inv.pickles
        }

    def small_file(self, file: FileInfo, limit_key: str) -> bytes | Finding:
        try:
            return self.small[file.name].result()
        except _TooLarge:
            return _too_large(file, self.limits[limit_key])


def _config(reads: _Reads, inv: Inventory, findings: list[Finding]) -> ModelConfig | None:
    if inv.config is None:
        return None
    data = reads.small_file(inv.config, "config_bytes")
    if isinstance(data, Finding):
        findings.append(data)
        return None
    try:
        return parse_config(data, tuple(catalog.quantization_policy()["config_keys"]))
    except ConfigError as exc:
        findings.append(error(exc.code, exc.message, inv.config.name, exc.hint))
        return None


def _header_finding(name: str, exc: HeaderError) -> Finding:
    return error(exc.code, f"{name}: {exc.message}.", name, exc.hint)


def _headers(
    pool: ThreadPoolExecutor,
    folder: Folder,
    reads: _Reads,
    inv: Inventory,
    findings: list[Finding],
) -> dict[str, SafetensorsHeader]:
    """Every safetensors header, within the folder's budgets: header bytes are summed from the
    first reads before the rest is fetched, and tensors are counted before anything is parsed."""
    limits = reads.limits
    prefixes: dict[str, tuple[FileInfo, HeaderPrefix]] = {}
    for file in inv.safetensors:
        try:
            prefixes[file.name] = (file, reads.prefixes[file.name].result())
        except HeaderError as exc:
            findings.append(_header_finding(file.name, exc))
    total = sum(prefix.length for _, prefix in prefixes.values())
    if total > limits["folder_header_bytes"]:
        findings.append(
            error(
                "SAFETENSORS_HEADERS_TOO_LARGE",
                f"The safetensors headers of this folder declare {total} bytes of JSON in all; "
                f"modeldrop reads at most {limits['folder_header_bytes'] // 2**20} MiB of headers "
                "per folder (real checkpoints need a few MiB).",
                None,
                "The headers are padded or corrupt: re-save the model with "
                "save_pretrained(safe_serialization=True) and upload it again.",
            )
        )
        return {}
    rests = {
        name: pool.submit(read_rest, folder, file, prefix)
        for name, (file, prefix) in prefixes.items()
    }
    raws: dict[str, bytes] = {}
    for name, future in rests.items():
        try:
            raws[name] = future.result()
        except HeaderError as exc:
            findings.append(_header_finding(name, exc))
    tensors = sum(tensor_count_bound(raw) for raw in raws.values())
    if tensors > limits["folder_tensors"]:
        findings.append(
            error(
                "SAFETENSORS_TOO_MANY_TENSORS",
                f"The safetensors headers of this folder declare about {tensors} tensors; "
                f"modeldrop reads at most {limits['folder_tensors']} per folder (the largest "
                "supported base model has about 92,000).",
                None,
                "Upload a model folder written by save_pretrained(); this one is not one.",
            )
        )
        return {}
    headers = {}
    for name in list(raws):  # one at a time, each raw header freed once parsed
        file, prefix = prefixes[name]
        try:
            headers[name] = parse_header(raws.pop(name), prefix.length, file.size)
        except HeaderError as exc:
            findings.append(_header_finding(name, exc))
    return headers


def _indexes(
    reads: _Reads, inv: Inventory, headers: dict[str, SafetensorsHeader], findings: list[Finding]
) -> None:
    present = {f.name for f in inv.safetensors + inv.pickles}
    for index in inv.indexes:
        data = reads.small_file(index, "index_bytes")
        if isinstance(data, Finding):
            findings.append(data)
            continue
        try:
            weight_map = parse_index(data)
        except IndexFileError as exc:
            findings.append(error(exc.code, f"{index.name} {exc.message}.", index.name, exc.hint))
            continue
        scope = headers if index.name.endswith(".safetensors.index.json") else {}
        findings.extend(check_index(index.name, weight_map, present, scope))


def _tokenizer_config(
    reads: _Reads, inv: Inventory, findings: list[Finding]
) -> dict[str, Any] | None:
    if inv.tokenizer_config is None:
        return None
    data = reads.small_file(inv.tokenizer_config, "tokenizer_config_bytes")
    if isinstance(data, Finding):
        findings.append(data)
        return None
    try:
        document: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        findings.append(
            error(
                "TOKENIZER_CONFIG_INVALID",
                f"{inv.tokenizer_config.name} is not a JSON object.",
                inv.tokenizer_config.name,
                "Save the tokenizer with tokenizer.save_pretrained(folder).",
            )
        )
        return None
    return document


def _overrides(reads: _Reads, inv: Inventory, findings: list[Finding]) -> Overrides:
    if inv.overrides is None:
        return Overrides({}, [])
    data = reads.small_file(inv.overrides, "overrides_bytes")
    if isinstance(data, Finding):
        findings.append(data)
        return Overrides({}, [])
    overrides = parse_overrides(data, inv.overrides.name)
    findings.extend(overrides.findings)
    return overrides


def _weights(
    headers: dict[str, SafetensorsHeader],
    inv: Inventory,
    config: ModelConfig | None,
    findings: list[Finding],
) -> tuple[int | None, int | None]:
    """Parameter count and weight bytes: from headers, estimated for pickle-only folders."""
    policy = catalog.quantization_policy()
    if headers:
        tensors = [t for h in headers.values() for t in h.tensors.values()]
        parameters = quantization.parameters(tensors, config, policy)
        if parameters == 0:
            findings.append(
                error(
                    "WEIGHTS_EMPTY",
                    f"The safetensors files ({len(headers)}) hold {len(tensors)} tensors and no "
                    "parameters at all: there is nothing to serve.",
                    None,
                    "Upload the weight files written by save_pretrained() for the trained model.",
                )
            )
        return parameters, sum(h.data_end for h in headers.values())
    if inv.pickles and not inv.safetensors:
        weight_bytes = sum(f.size for f in inv.pickles)
        raw = config.raw if config else {}
        dtype = raw.get("torch_dtype") or raw.get("dtype") or "float16"
        per_value = DTYPE_BYTES.get(dtype, 2) if isinstance(dtype, str) else 2
        findings.append(
            info(
                "PARAMETERS_ESTIMATED",
                f"Parameter count estimated from the *.bin file sizes at {per_value} bytes per "
                f"value (dtype {excerpt(dtype)}); pickle files are not opened to count them.",
            )
        )
        return weight_bytes // per_value, weight_bytes
    return None, None


def _machine(
    weight_bytes: int | None,
    config: ModelConfig | None,
    overrides: Overrides,
    inv: Inventory,
    default: MachineSpec | None,
    findings: list[Finding],
) -> MachineSpec | None:
    """The folder's requested machine (checked), else the operator's default when it fits,
    else the cheapest machine that fits."""
    if weight_bytes is None:
        return None
    machines = catalog.machine_catalog()
    heads = config.fields.get("num_attention_heads") if config else None
    requested = overrides.machine_spec
    if requested and inv.overrides:
        checks = sizing.check_requested(
            requested, weight_bytes, heads, machines, inv.overrides.name
        )
        findings.extend(checks)
        return requested if all(f.severity is not Severity.ERROR for f in checks) else None
    if default:
        checks = sizing.check_requested(default, weight_bytes, heads, machines, None)
        name = default.machine_type
        if all(f.severity is not Severity.ERROR for f in checks):
            text = f"Using the default machine {name} (MODELDROP_DEFAULT_MACHINE_SPEC)."
            findings.append(info("MACHINE_DEFAULT", text))
            return default
        text = f"The default machine {name} cannot serve this model: {checks[0].message}"
        findings.append(warning("MACHINE_DEFAULT_UNUSABLE", text + " Using the recommendation."))
    spec, finding = sizing.recommend(weight_bytes, heads, machines)
    findings.append(finding)
    return spec


def validate_folder(
    folder: Folder,
    policy: BasePolicy = BasePolicy.STRICT,
    default_machine: MachineSpec | None = None,
) -> Verdict:
    """Validate one model folder; the verdict always fits a deployment record.

    Raises AccessError only when the folder cannot be read. Any other failure, whatever the
    input did, is a rejected verdict with an INTERNAL_ERROR finding.
    """
    limits = catalog.file_rules()["limits"]
    try:
        verdict = _validate(folder, policy, default_machine)
    except AccessError:
        raise
    except Exception as exc:  # hostile input must end in a verdict, never in a stranded record
        return Verdict(findings=(internal_error(exc),))
    return bounded(verdict, limits["findings_per_code"], limits["verdict_bytes"])


def _validate(folder: Folder, policy: BasePolicy, default_machine: MachineSpec | None) -> Verdict:
    inv = take_inventory(folder.list_files(), catalog.file_rules())
    findings = list(inv.findings)
    with ThreadPoolExecutor(MAX_WORKERS) as pool:
        reads = _Reads(pool, folder, inv)
        config = _config(reads, inv, findings)
        headers = _headers(pool, folder, reads, inv, findings)
        for future in reads.pickles.values():
            findings.extend(future.result())
        _indexes(reads, inv, headers, findings)
        tokenizer_config = _tokenizer_config(reads, inv, findings)
        overrides = _overrides(reads, inv, findings)

    matched_base = None
    native = None
    quant_policy = catalog.quantization_policy()
    if config is not None:
        arch = check_architecture(config, catalog.base_models(), policy)
        findings.extend(arch.findings)
        matched_base = arch.matched_base
        decision = quantization.check_config(config, quant_policy)
        findings.extend(decision.findings)
        native = decision.native_format
    for name, header in headers.items():
        findings.extend(
            quantization.check_tensors(name, header.tensors.values(), quant_policy, native)
        )
    # Serving readiness after the format checks (their errors come first), ADAPTER_ONLY first.
    findings.extend(check_serving(reads.small_file, inv, config, headers, tokenizer_config))
    findings = with_adapter_check(findings, reads.small_file, inv, config)

    parameters, weight_bytes = _weights(headers, inv, config, findings)
    machine = (
        _machine(weight_bytes, config, overrides, inv, default_machine, findings)
        if parameters
        else None
    )
    findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return Verdict(
        findings=tuple(findings),
        architecture=config.architecture if config else None,
        model_type=config.model_type if config else None,
        matched_base=matched_base,
        parameters=parameters,
        weight_bytes=weight_bytes,
        attention_heads=config.fields.get("num_attention_heads") if config else None,
        recommended_machine=machine,
        overrides=overrides.values,
    )


def bounded(verdict: Verdict, per_code: int, max_bytes: int) -> Verdict:
    """The verdict with at most `per_code` findings of each code (then one saying how many more)
    and, dropping the least severe last findings if need be, at most `max_bytes` of JSON."""
    counts = Counter(f.code for f in verdict.findings)
    kept: list[Finding] = []
    shown: Counter[str] = Counter()
    for finding in verdict.findings:
        shown[finding.code] += 1
        if shown[finding.code] <= per_code:
            kept.append(finding)
        elif shown[finding.code] == per_code + 1:
            more = counts[finding.code] - per_code
            text = f"... and {more} more {finding.code} findings like the ones above."
            kept.append(Finding(finding.code, finding.severity, text, None, finding.hint))
    bounded_verdict = replace(verdict, findings=tuple(kept))
    while len(json.dumps(bounded_verdict.as_dict())) > max_bytes and len(kept) > 1:
        dropped = len(kept) - max(1, len(kept) * 3 // 4)
        kept = kept[:-dropped]
        note = info(
            "FINDINGS_TRUNCATED",
            f"{len(verdict.findings) - len(kept)} findings are not shown; the verdict is kept "
            f"under {max_bytes // 1024} KiB.",
        )
        bounded_verdict = replace(verdict, findings=(*kept, note))
    return bounded_verdict
