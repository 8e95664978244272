"""Precision, quantization and base-model loading.

`resolve_precision` and `build_bnb_config` are pure (settings in, settings or library object out);
`load_base_model` is the one place that reads base weights for training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ft.errors import FtError, ModelLoadError
from ft.schema import FtConfig
from ft.sources import ModelSource, resolve_model_source

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig, PreTrainedModel

DtypeName = str
"""'float32' | 'bfloat16' | 'float16'."""


@dataclass(frozen=True)
class Precision:
    """How a run computes: the matmul dtype, the trainer's mixed-precision flags and the device kind."""

    compute_dtype: DtypeName
    bf16: bool
    fp16: bool
    use_cpu: bool
    note: str | None = None
    """Said in the log when the choice is not what the config literally asked for."""

    def weights_dtype(self, full_finetune: bool) -> DtypeName:
        """Dtype to load the (unquantized) base weights in.

        fp16 mixed precision keeps fp32 master weights for a full fine-tune: the GradScaler refuses
        to unscale fp16 gradients.
        """
        if full_finetune and self.fp16:
            return "float32"
        return self.compute_dtype


def _cuda_info() -> tuple[bool, bool]:
    import torch

    has_cuda = torch.cuda.is_available()
    return has_cuda, bool(has_cuda and torch.cuda.is_bf16_supported())


def resolve_precision(
    cfg: FtConfig, *, has_cuda: bool | None = None, bf16_supported: bool | None = None
) -> Precision:
    """Compute dtype from `bf16` (true/false/auto) and `fp16` and the hardware.

    On a CPU, `auto` means float32: bfloat16 is 10-80x slower than float32 on CPUs without native
    bf16 (see DESIGN.md, library facts). `has_cuda`/`bf16_supported` default to the real hardware.
    """
    if has_cuda is None or bf16_supported is None:
        real_cuda, real_bf16 = _cuda_info()
        has_cuda = real_cuda if has_cuda is None else has_cuda
        bf16_supported = real_bf16 if bf16_supported is None else bf16_supported
    if not has_cuda:
        return _cpu_precision(cfg)
    if cfg.fp16:
        return Precision("float16", bf16=False, fp16=True, use_cpu=False)
    if cfg.bf16 is True:
        if not bf16_supported:
            raise FtError(
                "bf16: true, but this GPU does not support bfloat16",
                hint="set bf16: auto (falls back to fp16) or fp16: true",
            )
        return Precision("bfloat16", bf16=True, fp16=False, use_cpu=False)
    if cfg.bf16 == "auto":
        if bf16_supported:
            return Precision("bfloat16", bf16=True, fp16=False, use_cpu=False)
        return Precision(
            "float16",
            bf16=False,
            fp16=True,
            use_cpu=False,
            note="bf16: auto -> fp16 (this GPU has no bfloat16)",
        )
    return Precision("float32", bf16=False, fp16=False, use_cpu=False)


def _cpu_precision(cfg: FtConfig) -> Precision:
    if cfg.fp16:
        raise FtError(
            "fp16: true needs a GPU; this machine has none",
            hint="set fp16: false (a CPU computes in float32, or bfloat16 with bf16: true)",
        )
    if cfg.bf16 is True:
        return Precision(
            "bfloat16",
            bf16=True,
            fp16=False,
            use_cpu=True,
            note="bf16: true on a CPU: bfloat16 is 10-80x slower than float32 on CPUs without native bf16",
        )
    note = "no GPU: computing in float32 (bf16: auto)" if cfg.bf16 == "auto" else None
    return Precision("float32", bf16=False, fp16=False, use_cpu=True, note=note)


def torch_dtype(name: DtypeName) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def quantization_bits(cfg: FtConfig) -> int | None:
    if cfg.load_in_4bit:
        return 4
    if cfg.load_in_8bit:
        return 8
    return None


def bnb_compute_dtype(cfg: FtConfig, precision: Precision) -> DtypeName:
    """`bnb_4bit_compute_dtype`, with `auto` following the run's compute dtype."""
    if cfg.bnb_4bit_compute_dtype == "auto":
        return precision.compute_dtype
    return cfg.bnb_4bit_compute_dtype


def bnb_settings(cfg: FtConfig, precision: Precision) -> dict[str, Any]:
    """The BitsAndBytesConfig arguments (JSON-friendly: dtypes as names); empty when not quantized."""
    bits = quantization_bits(cfg)
    if bits == 4:
        settings: dict[str, Any] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": cfg.bnb_4bit_quant_type,
            "bnb_4bit_use_double_quant": cfg.bnb_4bit_use_double_quant,
            "bnb_4bit_compute_dtype": bnb_compute_dtype(cfg, precision),
        }
    elif bits == 8:
        settings = {"load_in_8bit": True}
    else:
        return {}
    settings.update(cfg.bnb_config_kwargs)
    return settings


def build_bnb_config(cfg: FtConfig, precision: Precision) -> BitsAndBytesConfig | None:
    """BitsAndBytesConfig from the config (nf4/fp4, double quant, compute dtype, extra kwargs), or None."""
    settings = bnb_settings(cfg, precision)
    if not settings:
        return None
    import inspect

    from transformers import BitsAndBytesConfig

    known = set(inspect.signature(BitsAndBytesConfig.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(cfg.bnb_config_kwargs) - known)
    if unknown:
        # BitsAndBytesConfig swallows unknown keys with a warning; a typo must not pass.
        raise FtError(
            f"bnb_config_kwargs: unknown key(s) {unknown}",
            hint="valid keys: " + ", ".join(sorted(known)),
        )
    for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
        if isinstance(settings.get(key), str):
            settings[key] = torch_dtype(settings[key])
    try:
        return BitsAndBytesConfig(**settings)
    except (TypeError, ValueError) as err:
        raise FtError(f"bnb_config_kwargs: {err}") from err


def quantization_info(cfg: FtConfig, precision: Precision) -> dict[str, Any]:
    """The `quantization` entry of run.json."""
    bits = quantization_bits(cfg)
    return {
        "bits": bits,
        "quant_type": cfg.bnb_4bit_quant_type if bits == 4 else None,
        "double_quant": cfg.bnb_4bit_use_double_quant if bits == 4 else None,
        "compute_dtype": bnb_compute_dtype(cfg, precision) if bits else None,
    }


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_base_model_path(cfg: FtConfig) -> str:
    """The local folder (or Hub id) the weights are loaded from; a .gguf file is materialized once."""
    source = resolve_model_source(cfg.base_model)
    if source.kind == "gguf":
        from pathlib import Path

        from ft.gguf import materialize_gguf

        return str(materialize_gguf(Path(source.location)))
    if source.kind == "hub":
        _check_hub_reachable(source, cfg.revision)
    return source.location


def _check_hub_reachable(source: ModelSource, revision: str | None) -> None:
    """Fail in seconds, not after a minute of retries, when a Hub model is neither cached nor reachable."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(
            source.location, revision=revision, local_files_only=True, allow_patterns=["config.json"]
        )
        return
    except Exception:  # not in the local cache: look online below
        pass
    if hub_offline():
        raise ModelLoadError(
            f"base_model: {source.location!r} is not in the local Hugging Face cache "
            "and HF_HUB_OFFLINE is set",
            hint="download it once with network access (hf download ...), or use a local folder",
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


def check_local_model(cfg: FtConfig, path: str) -> None:
    """Refuse a local folder's pickle weights or custom code before transformers sees it: `ft validate`
    checks the same, but a saved config (ft merge RUN_DIR) is reloaded without the file checks."""
    from pathlib import Path

    from ft.config_checks import local_model_problem

    folder = Path(path)
    if (folder / "config.json").is_file():
        problem = local_model_problem(folder, cfg.allow_pickle_weights, cfg.trust_remote_code)
        if problem:
            raise ModelLoadError(f"base_model: {problem}")


def _load_error(cfg: FtConfig, path: str, err: Exception) -> ModelLoadError:
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


def check_added_tokens_trainable(cfg: FtConfig, model: Any, added: int) -> None:
    """New token rows start random: under an adapter they must be trained and saved (modules_to_save)."""
    if cfg.adapter is None:
        return
    needed = [name for name in embedding_module_names(model) if name]
    missing = [name for name in needed if name not in (cfg.lora_modules_to_save or [])]
    if missing:
        raise FtError(
            f"special_tokens/tokens: {added} new token(s) get new embedding rows, but under adapter: "
            f"{cfg.adapter} only lora_modules_to_save is trained and saved in full, and it lacks {missing}",
            hint=f"set lora_modules_to_save: {needed}, or use tokens the vocabulary already has",
        )
