"""`ft merge`: fold a run's LoRA adapter into an unquantized base and write a plain transformers model.

Never into a quantized model: merging into 4-bit weights does not fail, it warns and leaves about
0.33 logit error (DESIGN.md, library facts). The base is reloaded unquantized in the chosen dtype.
Two ways to fold: in memory through peft's merge_and_unload, or streaming tensor by tensor from
the base's safetensors shards (ft.export.merge_stream) for models larger than memory. Either way the
merged model is checked: its logits on a probe batch against base+adapter's, within a tolerance
of the dtype, and the number is printed and kept in `ft_merge.json`.

The model is written into a temporary folder beside the output and renamed at the end, so an
interrupted or killed merge never leaves a half-written model where the output should be; a folder
left by a killed merge is removed by the next one (ft.runs.outdir). `--force` replaces only a folder
that holds `ft_merge.json` (a merge of ft's), and the old one is renamed aside until the new one
is in place.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError, OutputExistsError
from ft.base.host import available_memory
from ft.base.perms import follow_umask
from ft.models.adapter import refuse_folding
from ft.models.precision import Precision, torch_dtype
from ft.runs.folder import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MERGE_JSON,
    RunInfo,
    library_versions,
    read_run,
    run_hub_access,
    utc_now,
    write_json_atomic,
)
from ft.runs.outdir import (
    is_empty,
    new_sibling,
    owned_by_ft,
    refuse_foreign,
    refuse_holding_cwd,
    restore,
    set_aside,
    signals_held,
    stale_siblings,
    writing,
)

if TYPE_CHECKING:
    from ft.export.merge_stream import StreamResult

DEFAULT_OUT = "merged"
DEFAULT_MAX_SHARD_SIZE = "5GB"
DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
}
FP32_RELATIVE_TOLERANCE = 1e-5
FP32_TOLERANCE = 1e-4
"""Allowed max |logit difference| in float32: rounding leaves about 1e-7 to 1e-6 (DESIGN.md: 5e-7
on SmolLM2-135M), so only a correct merge passes."""
RELATIVE_TOLERANCE_16BIT = {"float16": 1e-2, "bfloat16": 6e-2}
"""16-bit: allowed max |logit difference| per unit of the largest |logit| (at least 1). A 16-bit
merge rounds W + delta once where base+adapter rounds W and the LoRA output separately, so the
logits differ by a few units of the format's precision (fp16 ~1e-3, bf16 ~8e-3) through the depth."""
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Hello! How are you today?",
    "0123456789 + - * / = ( ) { } [ ]",
)
MEMORY_HEADROOM = 2.0
"""In memory when the merged weights take less than 1/2 of the available memory: peft's merge
and the saver need working space beside the weights."""

Log = Callable[[str], None]
Hook = Callable[[Path], None]


@dataclass(frozen=True)
class MergeResult:
    out_dir: Path
    dtype: str
    mode: str
    max_abs_logit_diff: float | None
    tolerance: float | None
    seconds: float
    weight_files: int


def _ignore(message: str) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# Choices


def resolve_dtype(name: str | None, run: RunInfo) -> str:
    """--dtype as a torch dtype name; default: the run's training compute dtype (float32 on a CPU)."""
    if name is None:
        return str(run.data.get("dtype") or "float32")
    dtype = DTYPE_NAMES.get(name.strip().lower())
    if dtype is None:
        raise FtError(
            f"--dtype: {name!r} is not a merge dtype; choose bf16, fp16 or fp32",
            hint="ft merge never merges into a quantized (4-bit/8-bit) model: the base is reloaded "
            "unquantized in the dtype you choose",
        )
    return dtype


def tolerance_for(dtype: str, reference_max: float) -> float:
    """fp32: 1e-4, or 1e-5 of the largest |logit| when that is larger. Folding a trained adapter
    into W reorders float32 sums; over a 30-layer model with logits near 30 that moves logits by
    ~1e-4 (SmolLM2-135M after the quickstart: 1.4e-4), while a wrong merge moves them by 0.1 or more."""
    if dtype == "float32":
        return max(FP32_TOLERANCE, FP32_RELATIVE_TOLERANCE * reference_max)
    return RELATIVE_TOLERANCE_16BIT[dtype] * max(1.0, reference_max)


def merged_bytes(base_dir: Path, dtype: str) -> int | None:
    """Size of the merged weights in `dtype`, from the base's safetensors headers (None: unknown)."""
    from ft.export.merge_stream import _dtype_codes, base_shards, read_header

    try:
        shards = base_shards(base_dir)
    except FtError:
        return None
    element = torch_dtype(dtype).itemsize
    codes = _dtype_codes()
    total = 0
    for shard in shards:
        for tensor in read_header(shard):
            floating = codes[tensor.dtype].is_floating_point
            count = tensor.nbytes // codes[tensor.dtype].itemsize
            total += count * element if floating else tensor.nbytes
    return total


def choose_streaming(streaming: bool | None, base_dir: Path | None, dtype: str) -> tuple[bool, str]:
    """(streaming?, why) from --streaming/--in-memory or the model's size against free memory."""
    if streaming is not None:
        return streaming, "as asked"
    if base_dir is None:
        return False, "the base is not a local folder"
    size = merged_bytes(base_dir, dtype)
    if size is None:
        return False, "the base has no safetensors files"
    free = available_memory()
    if free is None or size * MEMORY_HEADROOM < free:
        return False, f"{size / 2**30:.2f} GiB of weights fit in memory"
    return True, f"{size / 2**30:.2f} GiB of weights, {free / 2**30:.2f} GiB of memory available"


# ---------------------------------------------------------------------------------------------
# The output folder


def default_out(run_dir: Path) -> Path:
    return run_dir / DEFAULT_OUT


def check_output(out: Path, run: RunInfo, force: bool) -> None:
    """The checks on --out, before the merge and again just before it is swapped in."""
    out = out.expanduser().resolve()
    protected = {
        run.run_dir.resolve(): "the run folder",
        Path(run.base_model_path).expanduser().resolve(): "the base model",
        Path.cwd().resolve(): "the current folder",
    }
    for path, what in protected.items():
        if out == path or out in path.parents:
            raise FtError(f"--out: {out} would replace {what}", hint="choose another --out folder")
    if is_empty(out):
        return
    if not force:
        ours = owned_by_ft(out, MERGE_MARKERS)
        raise OutputExistsError(
            f"--out: {out} already exists",
            hint="replace it with --force, or choose another --out folder"
            if ours
            else "choose another --out folder (ft did not create this one, so --force will not replace it)",
        )
    refuse_foreign(out, MERGE_MARKERS, "--out folder")
    refuse_holding_cwd(out)


MERGE_MARKERS = (MERGE_JSON,)
SIBLING_TAG = "merge"
OLD_TAG = "merge-old"
"""The previous merge, set aside while the new one is renamed into place (apart from the
temporary folders, so that a stale one can be put back)."""
MERGE_WRITE_HINT = "free some disk space (or choose --out on another disk), then run ft merge again"


def settle_stale_merges(out: Path, log: Log) -> None:
    """Hidden folders of an ft merge that was killed: its temporary folder goes; the previous merge
    it set aside goes back to --out if the new one never got there, else it goes."""
    for stale in stale_siblings(out, SIBLING_TAG) + stale_siblings(out, OLD_TAG):
        if (stale / out.name).is_dir() and not out.exists() and not out.is_symlink():
            restore(stale, out)
            log(f"the previous merge is back in {out}: an earlier ft merge was killed while replacing it")
        else:
            shutil.rmtree(stale, ignore_errors=True)
            log(f"removed {stale}: left by an earlier ft merge that was killed")


def new_temp_dir(out: Path) -> Path:
    """A hidden folder beside the output (same filesystem, so the final rename is atomic)."""
    return new_sibling(out, SIBLING_TAG, ".tmp")


def publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; a replaced one is set aside first and removed last."""
    old = set_aside(out, OLD_TAG) if out.exists() else None
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Loading


def local_base_dir(run: RunInfo) -> Path | None:
    """The base model's local folder: run.json's base_model_path (a GGUF base's converted folder),
    found again from the config when the run folder came from another machine, or a Hub id's
    snapshot in the local cache."""
    from ft.models.loading import locate_base_model

    located = locate_base_model(run.base_model_path, run.config)
    path = Path(located).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or located.startswith("."):
        raise FtError(
            f"the base model folder {path} (run.json base_model_path) no longer exists",
            hint="put the base model back there (a .gguf base is converted again by ft train's first step)",
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(located, revision=run.data.get("revision"), local_files_only=True))
    except Exception:  # not cached: transformers reports it when loading
        return None


def load_run_tokenizer(run: RunInfo) -> Any:
    """The run folder's tokenizer: it carries the chat template that renders the training format."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(run.run_dir))


def precision_for(dtype: str) -> Precision:
    return Precision(dtype, bf16=dtype == "bfloat16", fp16=dtype == "float16", use_cpu=True)


def load_base_with_adapter(run: RunInfo, tokenizer: Any, dtype: str) -> Any:
    """Unquantized base (embeddings grown for the run's added tokens) with the adapter, for inference."""
    from peft import PeftModel

    from ft.models.loading import load_model_from_path

    base_dir = local_base_dir(run)
    path = str(base_dir) if base_dir is not None else run.base_model_path
    base = load_model_from_path(run.config, path, tokenizer, precision_for(dtype), quantize=False)
    model = PeftModel.from_pretrained(base, str(run.run_dir))
    return model.eval()


def load_merged(folder: Path, dtype: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype(dtype)).eval()


# ---------------------------------------------------------------------------------------------
# Verification


def probe_batch(tokenizer: Any) -> Any:
    texts = list(PROBE_TEXTS)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")


def probe_logits(model: Any, batch: Any) -> Any:
    import torch

    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits.float()[batch["attention_mask"].bool()]


def max_abs_diff(a: Any, b: Any) -> float:
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------
# Writing


def merge_in_memory(model: Any, tmp: Path, shard_bytes: int) -> None:
    from ft.export.merge_stream import single_thread

    # Not safe_merge: it rounds the delta to a 16-bit weight's dtype before adding (two roundings);
    # the plain merge adds the float32 delta in place, one rounding, as the streaming path does.
    # A broken (NaN) adapter still fails the logit check.
    with single_thread():
        merged = model.merge_and_unload()
    # safetensors reports a full disk without an errno: any failure of this save is a write failure.
    with writing(tmp, MERGE_WRITE_HINT, any_error=True):
        merged.save_pretrained(str(tmp), max_shard_size=shard_bytes)


def write_streamed(run: RunInfo, base_dir: Path, tmp: Path, dtype: str, shard_bytes: int) -> StreamResult:
    from transformers import AutoConfig

    from ft.export.merge_stream import stream_merge

    result = stream_merge(base_dir, run.run_dir, tmp, torch_dtype(dtype), shard_bytes)
    config = AutoConfig.from_pretrained(str(base_dir), trust_remote_code=run.config.trust_remote_code)
    config.dtype = torch_dtype(dtype)
    text_config = config.get_text_config()
    for old, new in result.resized.values():
        if old and old[0] == text_config.vocab_size:
            text_config.vocab_size = new[0]
    config.save_pretrained(str(tmp))
    return result


def eos_ids(tokenizer: Any, terminator: str | None, base_ids: Any) -> list[int]:
    """The base's EOS ids, the tokenizer's EOS and the format's terminator, without repeats."""
    ids: list[int] = []
    candidates = [*(base_ids if isinstance(base_ids, list) else [base_ids]), tokenizer.eos_token_id]
    if terminator:
        candidates.append(tokenizer.convert_tokens_to_ids(terminator))
    for value in candidates:
        if isinstance(value, int) and value >= 0 and value != tokenizer.unk_token_id and value not in ids:
            ids.append(value)
    return ids


def write_generation_config(
    tmp: Path, base_dir: Path | None, tokenizer: Any, terminator: str | None
) -> list[int]:
    """generation_config.json whose EOS ids include the training format's terminator, so a plain
    transformers generate() or pipeline stops where the fine-tuned model was taught to stop."""
    from transformers import AutoConfig, GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(str(base_dir)) if base_dir else None
    except OSError:
        generation = None
    if generation is None:
        generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(str(tmp)))
    generation.eos_token_id = eos_ids(tokenizer, terminator, generation.eos_token_id)
    if tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        generation.bos_token_id = tokenizer.bos_token_id
    generation.save_pretrained(str(tmp))
    return list(generation.eos_token_id)


def align_special_ids(tmp: Path, tokenizer: Any) -> None:
    """config.json's BOS/EOS/pad ids as the tokenizer has them (generation_config.json says the same,
    with the terminator added to its EOS list): the base's config may lack a pad id the run chose."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(tmp))
    text_config = config.get_text_config()
    for target in [config] if text_config is config else [config, text_config]:
        target.pad_token_id = tokenizer.pad_token_id
        target.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            target.bos_token_id = tokenizer.bos_token_id
    config.save_pretrained(str(tmp))


def merge_record(run: RunInfo, result: MergeResult, eos: list[int]) -> dict[str, Any]:
    from ft import __version__

    return {
        "ft_version": __version__,
        "base_model": run.data.get("base_model"),
        "base_model_path": run.base_model_path,
        "base_model_name": run.data.get("base_model_name") or run.data.get("base_model"),
        "run_dir": str(run.run_dir.resolve()),
        "adapter": run.adapter,
        "dtype": result.dtype,
        "mode": result.mode,
        "max_abs_logit_diff": result.max_abs_logit_diff,
        "tolerance": result.tolerance,
        "probe_texts": list(PROBE_TEXTS),
        "terminator": run.data.get("terminator"),
        "eos_token_id": eos,
        "library_versions": library_versions(),
        "merged_at": utc_now(),
    }


# ---------------------------------------------------------------------------------------------
# The merge


def read_adapter_run(run_dir: Path) -> RunInfo:
    run = read_run(run_dir)
    if run.adapter is None:
        raise FtError(
            f"{run_dir} is a full fine-tune: its folder already holds the full weights",
            hint="load it with AutoModelForCausalLM.from_pretrained; there is no adapter to merge",
        )
    refuse_folding(run.adapter, run_dir, "ft merge")
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (run_dir / name).is_file():
            raise FtError(f"{run_dir} has no {name}", hint="give the output_dir of a finished LoRA/QLoRA run")
    return run


def merge_run(
    run_dir: Path,
    out: Path | None = None,
    *,
    dtype: str | None = None,
    max_shard_size: str = DEFAULT_MAX_SHARD_SIZE,
    force: bool = False,
    streaming: bool | None = None,
    verify: bool = True,
    log: Log = _ignore,
    before_publish: Hook | None = None,
) -> MergeResult:
    """The whole `ft merge`. `before_publish` sees the finished temporary folder just before it is
    renamed into place (a test can raise there to check that nothing is left behind)."""
    started = time.monotonic()
    run = read_adapter_run(Path(run_dir))
    for note in run_hub_access(run.run_dir):  # a Hub base: cached, or a quick failure
        log(note)
    dtype_name = resolve_dtype(dtype, run)
    # Resolved: `.` or `..` get real names, a symlink is replaced where it points.
    out = (out or default_out(run.run_dir)).expanduser().resolve()
    check_output(out, run, force)
    from ft.export.merge_stream import parse_size

    shard_bytes = parse_size(max_shard_size)
    base_dir = local_base_dir(run)
    use_streaming, why = choose_streaming(streaming, base_dir, dtype_name)
    mode = "streaming" if use_streaming else "in-memory"
    settle_stale_merges(out, log)
    log(f"merging {run.run_dir} ({run.adapter}) into {run.base_model_path}: {dtype_name}, {mode} ({why})")
    tmp = new_temp_dir(out)
    try:
        with writing(out, MERGE_WRITE_HINT):
            result = _write_merge(
                run, out, tmp, dtype_name, shard_bytes, use_streaming, base_dir, verify, log
            )
            result = replace(result, seconds=time.monotonic() - started)
        if before_publish is not None:
            before_publish(tmp)
        check_output(out, run, force)  # whatever appeared at --out during the merge
        with signals_held(drop=True) as dropped:
            publish(tmp, out)
        if dropped:
            log(f"{', '.join(dropped)} while the merge was put in place ignored: it is complete")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _write_merge(
    run: RunInfo,
    out: Path,
    tmp: Path,
    dtype: str,
    shard_bytes: int,
    use_streaming: bool,
    base_dir: Path | None,
    verify: bool,
    log: Log,
) -> MergeResult:
    """Everything of the merged model into `tmp`: weights, config, tokenizer, generation config,
    ft_merge.json last (the mark of a finished merge of ft's)."""
    diff, tolerance = _merge_into(run, tmp, dtype, shard_bytes, use_streaming, base_dir, verify, log)
    mode = "streaming" if use_streaming else "in-memory"
    result = MergeResult(out, dtype, mode, diff, tolerance, 0.0, _weight_files(tmp))
    tokenizer = load_run_tokenizer(run)
    tokenizer.save_pretrained(str(tmp))
    align_special_ids(tmp, tokenizer)
    eos = write_generation_config(tmp, base_dir, tokenizer, run.data.get("terminator"))
    write_json_atomic(tmp / MERGE_JSON, merge_record(run, result, eos))
    from ft.runs.card import write_merged_card, write_run_card

    write_merged_card(tmp, run, location=out)
    write_run_card(run.run_dir, repo=run.config.hub_model_id)
    follow_umask(tmp)
    return result


@contextmanager
def timed(log: Log, what: str) -> Iterator[None]:
    """`what ...` before, `what: 12.3 s` after: each long step of a merge is a line in a log file."""
    log(f"{what} ...")
    began = time.monotonic()
    yield
    log(f"{what}: {time.monotonic() - began:.1f} s")


def _weight_files(folder: Path) -> int:
    return len(list(folder.glob("*.safetensors")))


def _merge_into(
    run: RunInfo,
    tmp: Path,
    dtype: str,
    shard_bytes: int,
    use_streaming: bool,
    base_dir: Path | None,
    verify: bool,
    log: Log,
) -> tuple[float | None, float | None]:
    """Write the merged weights and config into `tmp`; returns (max |Δlogit|, tolerance)."""
    tokenizer = load_run_tokenizer(run)
    batch = probe_batch(tokenizer)
    model = None
    if verify or not use_streaming:
        with timed(log, f"loading the base model ({dtype}) with the adapter"):
            model = load_base_with_adapter(run, tokenizer, dtype)
    reference = probe_logits(model, batch) if verify and model is not None else None
    if use_streaming:
        if model is not None:
            del model
            gc.collect()
        assert base_dir is not None
        with timed(log, "merging and writing tensor by tensor"):
            write_streamed(run, base_dir, tmp, dtype, shard_bytes)
    else:
        with timed(log, "merging and writing the weights"):
            merge_in_memory(model, tmp, shard_bytes)
        del model
        gc.collect()
    if reference is None:
        log("verification skipped (--no-verify)")
        return None, None
    with timed(log, "loading the merged model to compare its logits"):
        merged = probe_logits(load_merged(tmp, dtype), batch)
    diff = max_abs_diff(merged, reference)
    tolerance = tolerance_for(dtype, float(reference.abs().max()))
    log(f"max |logit difference| merged vs base+adapter: {diff:.3g} (tolerance {tolerance:.3g} for {dtype})")
    if not diff <= tolerance:
        raise FtError(
            f"the merged model's logits differ from base+adapter's by {diff:.3g} "
            f"(tolerance {tolerance:.3g} for {dtype}): the merge is wrong, nothing was written",
            hint="try --dtype fp32, or --in-memory / --streaming for the other merge path",
        )
    return diff, tolerance
