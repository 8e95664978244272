"""Turn a .gguf file into an ordinary local model folder that can be trained and saved.

transformers loads a GGUF file dequantized, but the loaded model keeps a "gguf" quantizer
that refuses to be trained on or saved. So we load it once, copy its dequantized weights
into a fresh model built from the same config, and save that as safetensors with the
tokenizer and generation config. The folder is cached, keyed by the file's identity, so the
slow part (about 30 s for SmolLM2-135M on 2 CPU cores, most of it transformers parsing the
file's metadata) happens once per file.

Weights are stored in float32: a GGUF block is dequantized as `scale * q + min` in float32,
and those values are generally not representable in bfloat16, so float32 keeps the folder
exactly equal to the GGUF model (identical logits) at twice the disk size (540 MB for
SmolLM2-135M). Training on a CPU computes in float32 anyway (see DESIGN.md), so nothing is
converted at load time; a GPU run casts or quantizes as it loads.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import ModelLoadError
from ft.base.perms import dir_mode, follow_umask

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CACHE_ENV = "FT_CACHE_DIR"
CACHE_LAYOUT_VERSION = 1
"""Bump when the materialized folder's content changes, so old cache entries are not reused."""

COMPLETE_MARKER = "ft-gguf.json"
"""Written last inside the folder: a folder without it is not a finished materialization."""


def default_cache_dir() -> Path:
    """`$FT_CACHE_DIR`, else `~/.cache/ft`."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "ft"


def gguf_cache_key(path: Path) -> str:
    """A name that changes whenever the file (its location, size or modification time) changes."""
    resolved = path.expanduser().resolve()
    stat = resolved.stat()
    identity = f"{resolved}\0{stat.st_size}\0{stat.st_mtime_ns}\0{CACHE_LAYOUT_VERSION}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{resolved.stem}-{digest}"


def materialized_path(path: Path, cache_dir: Path | None = None) -> Path:
    """Where `materialize_gguf` puts (or has put) the folder for this file; it may not exist yet."""
    return (cache_dir or default_cache_dir()) / "gguf" / gguf_cache_key(path)


def is_materialized(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def materialize_gguf(path: Path, cache_dir: Path | None = None) -> Path:
    """A local model folder (config.json, model.safetensors, tokenizer) equal to the .gguf file.

    Built once and cached under `cache_dir` (default `$FT_CACHE_DIR` or `~/.cache/ft`), written
    into a temporary folder beside the final one and renamed, so an interrupted conversion
    never leaves a half-written folder where a finished one is expected.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{str(path)!r}: no such .gguf file")
    final = materialized_path(path, cache_dir)
    if is_materialized(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    staging.chmod(dir_mode())  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        model, tokenizer = load_gguf(path)
        save_materialized(model, tokenizer, staging, source=path)
        follow_umask(staging)
        if final.exists():  # a leftover without the marker, or a concurrent writer that finished first
            if is_materialized(final):
                return final
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def load_gguf(path: Path) -> tuple[PreTrainedModel, Any]:
    """The dequantized float32 model and the tokenizer of a .gguf file, straight from transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as err:
        raise ModelLoadError(
            f"{str(path)!r}: transformers cannot load this GGUF file: {err}",
            hint="check that the `gguf` package is installed and the model architecture is supported",
        ) from err
    return model, tokenizer


def save_materialized(model: PreTrainedModel, tokenizer: Any, folder: Path, source: Path) -> None:
    """Copy a GGUF-loaded model into a fresh, trainable model and save it with its tokenizer."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the "gguf" quantizer is what makes the loaded model unsavable
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.generation_config = model.generation_config
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = {"source": str(source.resolve()), "layout_version": CACHE_LAYOUT_VERSION, "dtype": "float32"}
    (folder / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def load_gguf_tokenizer(path: Path, cache_dir: Path | None = None) -> Any:
    """The tokenizer of a .gguf file without loading its weights.

    From the materialized folder when it exists (under a second), else from the file itself
    (about 10 s: transformers parses all of the file's metadata).
    """
    from transformers import AutoTokenizer

    folder = materialized_path(Path(path), cache_dir)
    if is_materialized(folder):
        return AutoTokenizer.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(str(Path(path).parent), gguf_file=Path(path).name)


ORIGIN_KEYS = ("general.source.huggingface.repository", "general.base_model.0.repo_url", "general.source.url")
"""GGUF metadata that names where a model came from (llama.cpp's converter writes them when it knows)."""
HUB_URL = re.compile(r"https?://huggingface\.co/([A-Za-z0-9][\w.\-]*/[\w.\-]+)")


def gguf_hub_origin(path: Path) -> str | None:
    """The Hub id a .gguf file says it was converted from, when its metadata says so."""
    try:
        from gguf import GGUFReader

        fields = GGUFReader(str(path)).fields
    except Exception:  # not readable as GGUF here: the loader reports that with a better message
        return None
    for key in ORIGIN_KEYS:
        field = fields.get(key)
        if field is None:
            continue
        value = str(field.contents())
        match = HUB_URL.match(value)
        if match:
            return match.group(1)
        if key.endswith("repository") and "/" in value:
            return value
    return None
