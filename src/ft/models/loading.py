"""Base-model loading, and the Hub/offline rules around it.

`load_base_model` is the one place that reads base weights for training; precision and the
bitsandbytes settings it loads with come from `ft.models.precision`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError, ModelLoadError
from ft.config.hub import HubRef, hub_offline, is_cached, probe_hub, repo_id_of_cached_path
from ft.config.schema import SOFT_PROMPT_ADAPTERS, AdapterSettings, FtConfig, ModelSettings
from ft.config.sources import PACKAGE_SCHEME, ModelSource, package_hub_origin, resolve_model_source
from ft.models.precision import Precision, build_bnb_config, quantization_bits, torch_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _no_note(line: str) -> None:
    return None


def resolve_base_model_path(cfg: ModelSettings, note: Callable[[str], None] = _no_note) -> str:
    """The local folder (or Hub id) the weights are loaded from; a .gguf file is materialized once
    (`note` hears when that happens: it takes a while)."""
    source = resolve_model_source(cfg.base_model)
    if source.kind == "gguf":
        from ft.models.gguf import is_materialized, materialize_gguf, materialized_path

        path = Path(source.location)
        if not is_materialized(materialized_path(path)):
            note(
                f"converting {path.name} once into a float32 safetensors folder in {materialized_path(path)}"
            )
        return str(materialize_gguf(path))
    if source.kind == "hub":
        _check_hub_reachable(source, cfg.revision)
    return source.location


def portable_base_name(cfg: ModelSettings) -> str:
    """How files that leave this machine name the base model (the adapter's base_model_name_or_path,
    run.json's base_model_name): the Hub id when the base came from the Hub or its origin is known
    (a Hub cache folder, a .gguf whose metadata or package names its repository), else the config's
    base_model as written, never a path into this machine's caches."""
    source = resolve_model_source(cfg.base_model)
    if source.kind == "hub":
        return source.location
    if source.kind == "gguf":
        from ft.models.gguf import gguf_hub_origin

        origin = gguf_hub_origin(Path(source.location))
        if origin is None and cfg.base_model.startswith(PACKAGE_SCHEME):
            origin = package_hub_origin(cfg.base_model)
        return origin or cfg.base_model
    return repo_id_of_cached_path(source.location) or cfg.base_model


def locate_base_model(saved_path: str, cfg: ModelSettings, note: Callable[[str], None] = _no_note) -> str:
    """run.json's base_model_path while it is there (or a Hub id); else the config's base_model
    resolved again here, so a run folder copied or moved to another machine finds its base (a
    pkg:// GGUF is converted again, a Hub id is read from the cache)."""
    path = Path(saved_path).expanduser()
    if path.exists() or not saved_path.startswith(("/", ".", "~")):
        return saved_path
    note(
        f"the base model folder {saved_path} (run.json) is not on this machine: using base_model {cfg.base_model}"
    )
    return resolve_base_model_path(cfg, note)


def _check_hub_reachable(source: ModelSource, revision: str | None) -> None:
    """Fail in seconds, not after a minute of retries, when a Hub model is neither cached nor
    reachable (the shared quick probe of ft.config.hub); a wrong id fails on the Hub's answer."""
    ref = HubRef("base_model", source.location, "weights", revision)
    if is_cached(ref):
        return
    why = "HF_HUB_OFFLINE is set" if hub_offline() else probe_hub()
    if why is not None:
        raise ModelLoadError(
            f"base_model: {source.location!r} is not in the local Hugging Face cache and {why}",
            hint=f"download it once with network access ({ref.download_command()}), or use a local folder",
        )
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(source.location, revision=revision, timeout=10)
    except Exception as err:
        raise ModelLoadError(
            f"base_model: cannot reach {source.location!r} on the Hugging Face Hub "
            f"({type(err).__name__}: {err})",
            hint="check the id, the revision, your network and token (HF_TOKEN), or use a local folder",
        ) from err


def weights_description(cfg: FtConfig, precision: Precision) -> str:
    """'4-bit nf4, computing in float32', 'bfloat16': how the base weights are loaded, for messages."""
    bits = quantization_bits(cfg)
    if bits == 4:
        return f"4-bit {cfg.bnb_4bit_quant_type}, computing in {precision.compute_dtype}"
    if bits == 8:
        return f"8-bit, computing in {precision.compute_dtype}"
    return precision.weights_dtype(full_finetune=cfg.adapter is None)


def _device_map(cfg: FtConfig, precision: Precision) -> Any:
    """k-bit weights are placed at load time: on the CPU, or on this process's GPU (one per rank)."""
    if quantization_bits(cfg) is None:
        return None
    if precision.use_cpu:
        return "cpu"
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def load_base_model(
    cfg: FtConfig, tokenizer: Any, precision: Precision, quantize: bool = True
) -> PreTrainedModel:
    """The base model for training (k-bit when configured and `quantize`), embeddings resized
    for added tokens.

    `quantize=False` loads unquantized weights in the compute dtype (for merging).
    """
    path = resolve_base_model_path(cfg)
    return load_model_from_path(cfg, path, tokenizer, precision, quantize=quantize)


def load_model_from_path(
    cfg: FtConfig, path: str, tokenizer: Any, precision: Precision, quantize: bool = True
) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    check_local_model(cfg, path)
    bnb = build_bnb_config(cfg, precision) if quantize else None
    kwargs: dict[str, Any] = {
        # axolotl's model_config: values that from_pretrained sets on the model's config.
        **cfg.overrides_of_model_config,
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
        # transformers 5 keeps a checkpoint's saved dtype unless told: ask for the one we compute in.
        "dtype": torch_dtype(precision.weights_dtype(full_finetune=cfg.adapter is None)),
        "use_safetensors": None if cfg.allow_pickle_weights else True,
    }
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if bnb is not None:
        kwargs["quantization_config"] = bnb
        kwargs["device_map"] = _device_map(cfg, precision)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, ImportError) as err:
        raise _load_error(cfg, path, err) from err
    resize_for_added_tokens(cfg, model, tokenizer)
    return model


def check_local_model(cfg: ModelSettings, path: str) -> None:
    """Refuse a local folder's pickle weights or custom code before transformers sees it: `ft validate`
    checks the same, but a saved config (ft merge RUN_DIR) is reloaded without the file checks."""
    from pathlib import Path

    from ft.config.checks import local_model_problem

    folder = Path(path)
    if (folder / "config.json").is_file():
        problem = local_model_problem(folder, cfg.allow_pickle_weights, cfg.trust_remote_code)
        if problem:
            raise ModelLoadError(f"base_model: {problem}")


def _load_error(cfg: ModelSettings, path: str, err: Exception) -> ModelLoadError:
    text = str(err)
    if "safetensors" in text and not cfg.allow_pickle_weights:
        return ModelLoadError(
            f"base_model: {path} has no safetensors weights ({text.splitlines()[0]})",
            hint="convert the weights to safetensors, or set allow_pickle_weights: true if you trust them",
        )
    if "trust_remote_code" in text:
        return ModelLoadError(
            f"base_model: {path} needs its own Python code and trust_remote_code is false: "
            "ft runs no code from a model unless told",
            hint="set trust_remote_code: true if you trust the repository's code",
        )
    return ModelLoadError(
        f"base_model: cannot load {path}: {text.splitlines()[0] if text else type(err).__name__}"
    )


def resize_for_added_tokens(cfg: FtConfig, model: Any, tokenizer: Any) -> int:
    """Grow the embeddings when the tokenizer has more tokens than the model; returns the rows added."""
    if tokenizer is None:
        return 0
    rows = model.get_input_embeddings().weight.shape[0]
    added = len(tokenizer) - rows
    if added <= 0:
        return 0
    check_added_tokens_trainable(cfg, model, added)
    model.resize_token_embeddings(len(tokenizer))
    return added


def embedding_module_names(model: Any) -> tuple[str, str | None]:
    """Leaf names of the input embedding and (untied) output head, e.g. ('embed_tokens', 'lm_head')."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    tied = out is None or getattr(out, "weight", None) is getattr(inp, "weight", None)
    return names[id(inp)], None if tied else names.get(id(out))


def check_added_tokens_trainable(cfg: AdapterSettings, model: Any, added: int) -> None:
    """New token rows start random: under an adapter they must be trained and saved (modules_to_save)."""
    if cfg.adapter is None:
        return
    if cfg.adapter in SOFT_PROMPT_ADAPTERS:
        raise FtError(
            f"special_tokens/tokens: {added} new token(s) would get new, random embedding rows, but "
            f"adapter: {cfg.adapter} trains only the soft prompt: they would stay random",
            hint="use tokens the vocabulary already has, or adapter: lora with lora_modules_to_save",
        )
    needed = [name for name in embedding_module_names(model) if name]
    missing = [name for name in needed if name not in (cfg.lora_modules_to_save or [])]
    if missing:
        raise FtError(
            f"special_tokens/tokens: {added} new token(s) get new embedding rows, but under adapter: "
            f"{cfg.adapter} only lora_modules_to_save is trained and saved in full, and it lacks {missing}",
            hint=f"set lora_modules_to_save: {needed}, or use tokens the vocabulary already has",
        )
