"""`ft export SOURCE --gguf TYPE`: a run folder or a merged model as one verified GGUF file, with
an Ollama Modelfile and a record beside it.

A run folder is merged first (`ft.export.merge.merge_run`, in float32, verified as `ft merge`
verifies) into a temporary folder that is removed afterwards; a merged folder (or a full
fine-tune's run folder) is read as it is. Everything is checked before the first weight is read:
the type, the architecture, the output path. The file is written under a temporary name beside
the output, verified (ft.export.gguf_verify), and only then renamed into place; an existing file is
replaced only with --force.

Files for `--out NAME.gguf` (default: SOURCE-TYPE.gguf beside the source folder):
`NAME.gguf`, `NAME.Modelfile` (Ollama), `NAME.ft_export.json` (what was written and measured).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft.base.errors import FtError, OutputExistsError
from ft.runs.folder import (
    MERGE_JSON,
    RUN_JSON,
    library_versions,
    read_json,
    utc_now,
    write_json_atomic,
    write_text_atomic,
)
from ft.runs.outdir import new_sibling, stale_siblings

EXPORT_TAG = "export"
"""The hidden working folder beside the output (ft.runs.outdir): a run's temporary merge and the
file being written live there until the file is renamed into place."""
Log = Callable[[str], None]
OnTensor = Callable[[int, int], None]
K_QUANT_HINT = (
    "K-quants are made by llama.cpp's own quantizer: pip install llama-cpp-python (it builds llama.cpp "
    "from source, about 18 minutes on 2 CPU cores), or choose f16, q8_0, q5_1, q5_0, q4_1 or q4_0"
)


def _ignore(message: str) -> None:
    return None


@dataclass(frozen=True)
class Source:
    """What is exported: the folder holding full weights, and what ft knows about the run."""

    path: Path
    run_dir: Path | None
    """The run folder, when the export starts from one (it is merged first if it has an adapter)."""
    adapter: bool
    record: dict[str, Any] = field(default_factory=dict)
    """run.json or ft_merge.json: base_model, terminator."""
    system_prompt: str | None = None


@dataclass(frozen=True)
class ExportResult:
    out: Path
    modelfile: Path | None
    record: Path
    type_name: str
    bytes: int
    tensors: int
    seconds: float
    verification: dict[str, Any]
    modelfile_note: str | None


# ---------------------------------------------------------------------------------------------
# Checks before any work


def type_names() -> list[str]:
    from ft.export.gguf_write import K_QUANTS, NUMPY_TYPES

    return [*NUMPY_TYPES, *K_QUANTS]


def check_type(name: str, adapter_only: bool) -> str:
    from ft.export.gguf_write import K_QUANTS, NUMPY_TYPES

    key = name.strip().lower()
    if key not in NUMPY_TYPES and key not in K_QUANTS:
        raise FtError(
            f"--gguf: {name!r} is not a GGUF type ft writes", hint="one of: " + ", ".join(type_names())
        )
    if adapter_only and key not in ("f32", "f16", "bf16", "q8_0"):
        raise FtError(f"--adapter-only --gguf {key}: an adapter is written in f32, f16, bf16 or q8_0")
    if key in K_QUANTS and not llama_cpp_available():
        raise FtError(f"--gguf {key} needs llama.cpp's quantizer, which is not installed", hint=K_QUANT_HINT)
    return key


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def read_source(path: Path) -> Source:
    """A run folder (run.json) or a model folder (config.json with safetensors weights)."""
    from ft.models.adapter import refuse_folding
    from ft.runs.folder import read_run

    path = Path(path).expanduser().resolve()
    if (path / RUN_JSON).is_file():
        run = read_run(path)
        refuse_folding(run.adapter, path, "ft export")  # llama.cpp has no soft prompts
        system = next((d.system_prompt for d in run.config.datasets if d.system_prompt), None)
        return Source(path, path, run.adapter is not None, dict(run.data), system)
    if (path / "config.json").is_file():
        record = read_json(path / MERGE_JSON) or {}
        system = None
        run_dir = Path(record["run_dir"]) if record.get("run_dir") else None
        if run_dir is not None and (run_dir / RUN_JSON).is_file():
            try:
                run = read_run(run_dir)
                system = next((d.system_prompt for d in run.config.datasets if d.system_prompt), None)
            except FtError:
                pass
        return Source(path, None, False, record, system)
    raise FtError(
        f"{path} is neither an ft run folder (run.json) nor a model folder (config.json)",
        hint="give the output_dir of ft train or the folder ft merge wrote",
    )


def architecture_config(source: Source) -> Path:
    """The folder whose config.json names the architecture: the source, or a run's base model."""
    if source.adapter:
        from ft.export.merge import local_base_dir
        from ft.runs.folder import read_run

        base = local_base_dir(read_run(source.path))
        if base is None:
            raise FtError(
                f"{source.path}: the base model {source.record.get('base_model')!r} is not on this machine",
                hint="the merge needs the base model's weights in the local Hugging Face cache",
            )
        return base
    return source.path


def check_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, when it is one ft can write (a run folder holds the tokenizer its
    merge will have)."""
    from transformers import AutoTokenizer

    from ft.export.gguf_vocab import tokenizer_kind

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer_kind(tokenizer, folder)
    return tokenizer


def default_out(source: Source, type_name: str, adapter_only: bool) -> Path:
    suffix = f"lora-{type_name}" if adapter_only else type_name
    return source.path.parent / f"{source.path.name}-{suffix}.gguf"


def sidecars(out: Path) -> tuple[Path, Path]:
    """The Modelfile and the record beside the GGUF file."""
    stem = out.name[: -len(".gguf")] if out.name.endswith(".gguf") else out.name
    return out.with_name(f"{stem}.Modelfile"), out.with_name(f"{stem}.ft_export.json")


def check_out(out: Path, source: Source, force: bool) -> None:
    if out.suffix != ".gguf":
        raise FtError(f"--out: {out} does not end in .gguf", hint="name the file NAME.gguf")
    if out.is_dir():
        raise FtError(f"--out: {out} is a folder", hint="give a file name ending in .gguf")
    if source.path == out or source.path in out.parents:
        raise FtError(
            f"--out: {out} is inside the model folder it is exported from", hint="choose another --out"
        )
    taken = [p for p in (out, *sidecars(out)) if p.exists()]
    if taken and not force:
        raise OutputExistsError(
            f"--out: {taken[0]} already exists", hint="replace it with --force, or choose another --out"
        )


# ---------------------------------------------------------------------------------------------
# The export


def export_gguf(
    source_path: Path,
    type_name: str,
    out: Path | None = None,
    *,
    force: bool = False,
    adapter_only: bool = False,
    verify: bool = True,
    log: Log = _ignore,
    on_tensor: OnTensor | None = None,
) -> ExportResult:
    started = time.monotonic()
    kind_name = check_type(type_name, adapter_only)
    source = read_source(source_path)
    if adapter_only and not source.adapter:
        raise FtError(
            f"--adapter-only: {source.path} has no LoRA adapter", hint="give a LoRA/QLoRA run folder"
        )
    from ft.export.gguf_arch import arch_for
    from ft.export.gguf_write import read_hparams

    hparams = read_hparams(architecture_config(source))
    recipe = arch_for(hparams, str(source.path))
    tokenizer = None if adapter_only else check_tokenizer(source.path)
    out = (out or default_out(source, kind_name, adapter_only)).expanduser().resolve()
    check_out(out, source, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_siblings(out, EXPORT_TAG):  # left by an ft export that was killed
        shutil.rmtree(stale, ignore_errors=True)
        log(f"removed {stale}: left by an earlier ft export that was killed")
    work = new_sibling(out, EXPORT_TAG, ".tmp")
    try:
        if adapter_only:
            return _export_adapter(source, recipe, hparams, kind_name, out, work, started, log)
        folder = _merged_folder(source, work, log)
        if folder != source.path:  # the merge saved its own copy: read what the file will describe
            tokenizer = None
        return _export_model(
            source, folder, tokenizer, recipe, kind_name, out, work, started, verify, log, on_tensor
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _merged_folder(source: Source, work: Path, log: Log) -> Path:
    if not source.adapter:
        return source.path
    from ft.export.merge import merge_run

    log(f"merging {source.path} first (float32, verified as ft merge does)")
    result = merge_run(source.path, work / "merged", dtype="fp32", log=log)
    return result.out_dir


def _export_model(
    source: Source,
    folder: Path,
    tokenizer: Any | None,
    recipe: Any,
    kind_name: str,
    out: Path,
    work: Path,
    started: float,
    verify: bool,
    log: Log,
    on_tensor: OnTensor | None,
) -> ExportResult:
    from transformers import AutoTokenizer

    from ft.data.prompts import special_tokens_of
    from ft.export.gguf_vocab import build_vocab
    from ft.export.gguf_write import K_QUANTS, NUMPY_TYPES, Metadata, read_hparams, write_model
    from ft.export.modelfile import build_modelfile

    hparams = read_hparams(folder)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    specials = special_tokens_of(tokenizer)
    vocab = build_vocab(tokenizer, folder, int(hparams.get("vocab_size") or len(tokenizer)))
    chat_template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    base_name = source.record.get("base_model_name") or source.record.get("base_model")
    meta = Metadata(source.path.name, base_name, chat_template, specials.adds_bos)
    written_type = "f16" if kind_name in K_QUANTS else kind_name
    tmp = work / out.name
    log(
        f"writing {written_type} GGUF ({recipe.arch_name}, {len(vocab.tokens)} tokens, pre-tokenizer {vocab.pre})"
    )
    plans = write_model(folder, tmp, recipe, hparams, NUMPY_TYPES[written_type], vocab, meta, on_tensor)
    fields = {"general.architecture": recipe.arch_name, "tokenizer.ggml.model": vocab.model}
    if chat_template:
        fields["tokenizer.chat_template"] = chat_template
    verification: dict[str, Any] = {}
    if verify:
        verification.update(_read_back(tmp, plans, fields, log))
    if kind_name in K_QUANTS:
        tmp = _k_quantize(tmp, work / f"k-{out.name}", K_QUANTS[kind_name], log)
    if verify:
        verification.update(_logits(tmp, folder, kind_name, tokenizer, log))
    stop = [specials.eos]
    terminator = source.record.get("terminator")
    if terminator:
        stop.insert(0, str(terminator))
    modelfile_path, record_path = sidecars(out)
    bos = specials.bos if specials.adds_bos else None
    modelfile = build_modelfile(out.name, tokenizer, stop, source.system_prompt, bos)
    record = {
        "ft_version": _version(),
        "source": str(source.path),
        "merged_from_run": source.adapter,
        "base_model": source.record.get("base_model"),
        "base_model_name": base_name,
        "gguf": out.name,
        "type": kind_name,
        "architecture": recipe.arch_name,
        "tokenizer": {
            "model": vocab.model,
            "pre": vocab.pre,
            "tokens": len(vocab.tokens),
            "add_bos": specials.adds_bos,
        },
        "chat_template": bool(chat_template),
        "tensors": len(plans),
        "bytes": tmp.stat().st_size,
        "verification": verification or None,
        "modelfile": {
            "template": modelfile.template is not None,
            "system": modelfile.system,
            "stop": modelfile.stop,
            "note": modelfile.note,
        },
        "library_versions": {**library_versions(), "gguf": _gguf_version()},
        "exported_at": utc_now(),
    }
    seconds = round(time.monotonic() - started, 2)
    record["seconds"] = seconds
    os.replace(tmp, out)
    write_text_atomic(modelfile_path, modelfile.text)
    write_json_atomic(record_path, record)
    return ExportResult(
        out,
        modelfile_path,
        record_path,
        kind_name,
        out.stat().st_size,
        len(plans),
        record["seconds"],
        verification,
        modelfile.note,
    )


def _read_back(path: Path, plans: list[Any], fields: dict[str, Any], log: Log) -> dict[str, Any]:
    from ft.export.gguf_verify import read_back

    checked = read_back(path, plans, fields)
    log(
        f"read back {checked.tensors} tensors: largest relative error {checked.worst_relative_error:.3g} "
        f"({checked.worst_tensor})"
    )
    return {"tensors_read_back": checked.tensors, "max_relative_tensor_error": checked.worst_relative_error}


def _logits(path: Path, folder: Path, kind_name: str, tokenizer: Any, log: Log) -> dict[str, Any]:
    from ft.export.gguf_verify import compare_logits
    from ft.export.merge import PROBE_TEXTS, tolerance_for

    prompt = _chat_probe(tokenizer)
    texts = (*PROBE_TEXTS, prompt) if prompt else PROBE_TEXTS
    check = compare_logits(path, folder, kind_name, texts, tolerance_for)
    tolerance = "" if check.tolerance is None else f" (tolerance {check.tolerance:.3g})"
    log(
        f"logits of the GGUF file (transformers' GGUF loader) vs the merged model on {check.positions} positions: "
        f"max |Δlogit| {check.max_abs_logit_diff:.3g}{tolerance}, top-1 agreement {check.top1_agreement:.1%}"
    )
    if not check.tokenizer_ids_equal:
        raise FtError(
            f"{path}: the tokenizer read back from the GGUF file encodes the probe texts differently",
            hint="report this as a bug in ft export; the file was not kept (a Qwen2 model with a tokenizer "
            "that is not Qwen's: transformers reads every qwen2 file's tokenizer as Qwen's, llama.cpp does "
            "not; --no-verify writes it)",
        )
    if check.tolerance is not None and not check.max_abs_logit_diff <= check.tolerance:
        raise FtError(
            f"{path}: logits differ from the merged model's by {check.max_abs_logit_diff:.3g} "
            f"(tolerance {check.tolerance:.3g} for {kind_name}): the export is wrong, nothing was kept",
            hint="report this as a bug in ft export",
        )
    return {
        "probe_texts": list(texts),
        "positions": check.positions,
        "max_abs_logit_diff": check.max_abs_logit_diff,
        "tolerance": check.tolerance,
        "top1_agreement": check.top1_agreement,
        "tokenizer_ids_equal": check.tokenizer_ids_equal,
    }


def _chat_probe(tokenizer: Any) -> str | None:
    """A prompt in the training format, so the probe covers the template's special tokens."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        rows = [{"role": "user", "content": "What is 5 Mar 1971 as YYYY-MM-DD?"}]
        return str(tokenizer.apply_chat_template(rows, tokenize=False, add_generation_prompt=True))
    except Exception:  # a template that rejects this conversation: the plain probes still run
        return None


def _k_quantize(f16: Path, out: Path, file_type: int, log: Log) -> Path:
    """llama.cpp's own quantizer, through llama-cpp-python, from the f16 file."""
    try:
        import llama_cpp
    except ImportError as err:  # installed but broken (a missing dependency, a failed build)
        raise FtError(
            f"llama-cpp-python is installed but cannot be imported ({err})", hint=K_QUANT_HINT
        ) from None

    log(f"quantizing with llama.cpp (file type {file_type})")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(file_type)
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), params)
    if status != 0:
        raise FtError(f"llama.cpp's quantizer failed (status {status})", hint="try f16 or q8_0")
    f16.unlink()
    return out


def _export_adapter(
    source: Source,
    recipe: Any,
    hparams: dict[str, Any],
    kind_name: str,
    out: Path,
    work: Path,
    started: float,
    log: Log,
) -> ExportResult:
    from ft.export.gguf_lora import write_lora
    from ft.export.gguf_verify import read_back
    from ft.export.gguf_write import NUMPY_TYPES

    if recipe.transposed:
        raise FtError(
            f"--adapter-only: {recipe.name} adapters are not exported alone", hint="export the merged model"
        )
    tmp = work / out.name
    plans, alpha = write_lora(source.path, tmp, recipe, hparams, NUMPY_TYPES[kind_name], source.path.name)
    checked = read_back(tmp, plans, {"general.type": "adapter", "adapter.type": "lora"})
    log(
        f"read back {checked.tensors} adapter tensors: largest relative error {checked.worst_relative_error:.3g}"
    )
    verification = {
        "tensors_read_back": checked.tensors,
        "max_relative_tensor_error": checked.worst_relative_error,
    }
    _, record_path = sidecars(out)
    record: dict[str, Any] = {
        "ft_version": _version(),
        "source": str(source.path),
        "base_model": source.record.get("base_model"),
        "base_model_name": source.record.get("base_model_name") or source.record.get("base_model"),
        "gguf": out.name,
        "type": kind_name,
        "adapter": {"type": "lora", "alpha": alpha, "tensors": len(plans)},
        "verification": verification,
        "library_versions": {**library_versions(), "gguf": _gguf_version()},
        "exported_at": utc_now(),
    }
    seconds = round(time.monotonic() - started, 2)
    record["seconds"] = seconds
    os.replace(tmp, out)
    write_json_atomic(record_path, record)
    return ExportResult(
        out,
        None,
        record_path,
        kind_name,
        out.stat().st_size,
        len(plans),
        seconds,
        verification,
        None,
    )


def _version() -> str:
    from ft import __version__

    return __version__


def _gguf_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("gguf")
    except metadata.PackageNotFoundError:
        return None
