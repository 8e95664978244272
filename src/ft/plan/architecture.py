"""What `ft plan` knows about a model without its weights: the architecture config, and a model
built on the meta device (no memory, no download) to count parameters by kind, find the layers
bitsandbytes would quantize and the layers LoRA would wrap, with the same rules as `ft train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft.base.errors import FtError
from ft.config.hub import cached_file, hub_offline, probe_hub
from ft.config.schema import AdapterSettings, FtConfig, ModelSettings
from ft.config.sources import resolve_model_source
from ft.models.adapter import is_soft_prompt, target_modules

KINDS = ("embeddings", "attention", "mlp", "norms", "head", "other")


@dataclass(frozen=True)
class Shape:
    """A linear layer's weight as (out_features, in_features)."""

    out: int
    inp: int

    @property
    def numel(self) -> int:
        return self.out * self.inp


@dataclass
class Architecture:
    """Counts and shapes read from a meta-device model."""

    source: str
    """Where the architecture config came from (a folder, a .gguf file, the Hub cache)."""
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    q_dim: int
    """Width of the queries and of the attention output: heads x head_dim (not always hidden)."""
    kv_dim: int
    vocab_size: int
    counts: dict[str, int]
    """Parameters per kind (KINDS); tied weights counted once."""
    quantizable: list[Shape]
    """Weights bitsandbytes replaces when loading in 4 or 8 bit (linear layers but the head)."""
    buffer_bytes: int
    matmul_params: int
    """Parameters used in a matrix multiply per token (all but embedding look-ups and norms)."""
    gated_mlp: bool
    """Llama-style gate/up/down MLP (three intermediate-size activations kept) or fc1/fc2 (two)."""
    all_tensors: list[Shape] = field(default_factory=list)
    """Every parameter (tied ones once), for a full fine-tune's gradients and optimizer states."""
    lora_targets: list[str] = field(default_factory=list)
    lora_tensors: list[Shape] = field(default_factory=list)
    """The trainable tensors the adapter adds (lora_A, lora_B, DoRA magnitudes; a soft prompt's
    embeddings), in float32."""
    saved_modules: list[Shape] = field(default_factory=list)
    """The trainable copies of `lora_modules_to_save`, in the base weights' dtype."""
    lora_inputs: list[int] = field(default_factory=list)
    """in_features of each wrapped layer (for the activations the adapter keeps); 0 for an embedding."""
    lora_outputs: list[int] = field(default_factory=list)
    """out_features of each wrapped linear layer (for DoRA's activations)."""

    @property
    def total_params(self) -> int:
        return sum(self.counts.values())

    @property
    def quantizable_params(self) -> int:
        return sum(s.numel for s in self.quantizable)

    @property
    def lora_params(self) -> int:
        return sum(t.numel for t in self.lora_tensors)

    @property
    def saved_module_params(self) -> int:
        return sum(t.numel for t in self.saved_modules)

    @property
    def head_matmul_params(self) -> int:
        """The output head's weight (the embedding matrix when tied)."""
        return self.matmul_params - sum(self.counts[k] for k in ("attention", "mlp", "other"))


def load_model_config(cfg: ModelSettings) -> tuple[Any, str]:
    """(transformers config, where it came from), reading only config.json (or GGUF metadata)."""
    from transformers import AutoConfig

    source = resolve_model_source(cfg.base_model)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if source.kind == "local_dir":
        config_file = Path(source.location) / "config.json"
        if not config_file.is_file():
            raise FtError(
                f"base_model: {source.location} has no config.json",
                hint="point base_model at a model folder (config.json, weights, tokenizer)",
            )
        return read_config_file(
            str(config_file), lambda: AutoConfig.from_pretrained(source.location, **kwargs)
        )
    if source.kind == "gguf":
        return _gguf_config(Path(source.location), kwargs)
    return _hub_config(source.location, cfg.revision, kwargs)


def read_config_file(where: str, read: Callable[[], Any]) -> tuple[Any, str]:
    """(config, where) from `read`, with transformers' errors for a broken or unknown config
    (not JSON, an unknown model_type, ...) as one FtError naming the file."""
    try:
        config = read()
    except (OSError, ValueError, KeyError) as err:
        raise FtError(
            f"base_model: cannot read the architecture in {where}: {_first_line(err)}",
            hint="check that it is a transformers config.json (JSON, with a model_type transformers knows)",
        ) from err
    return config, where.removesuffix("/config.json")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _gguf_config(path: Path, kwargs: dict[str, Any]) -> tuple[Any, str]:
    from transformers import AutoConfig

    from ft.models.gguf import is_materialized, materialized_path

    folder = materialized_path(path)
    if is_materialized(folder):  # ft train has converted it already: a plain folder
        return read_config_file(
            str(folder / "config.json"), lambda: AutoConfig.from_pretrained(folder, **kwargs)
        )
    config, _ = read_config_file(
        str(path), lambda: AutoConfig.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
    )
    return config, str(path)


def _hub_config(repo_id: str, revision: str | None, kwargs: dict[str, Any]) -> tuple[Any, str]:
    """The Hub config from the local cache, else (when the shared quick probe of ft.config.hub
    reaches the Hub) from the Hub; never the weights."""
    from transformers import AutoConfig

    cached = cached_file(repo_id, "config.json", revision)
    if cached is not None:
        config, _ = read_config_file(
            f"{repo_id}'s cached config.json ({cached})",
            lambda: AutoConfig.from_pretrained(repo_id, revision=revision, local_files_only=True, **kwargs),
        )
        return config, f"{repo_id} (Hugging Face cache)"
    if hub_offline():
        why = "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        raise _no_config_error(repo_id, revision, why)
    unreachable = probe_hub()
    if unreachable is not None:
        raise _no_config_error(repo_id, revision, f"the Hub cannot be reached ({unreachable})")
    from huggingface_hub import hf_hub_download

    try:
        _probe_hub(repo_id, revision)
        path = hf_hub_download(repo_id, "config.json", revision=revision, etag_timeout=10)
    except Exception as err:  # the transport's exception types are not public API
        raise _no_config_error(repo_id, revision, _hub_problem(err, repo_id, revision)) from err
    config, _ = read_config_file(path, lambda: AutoConfig.from_pretrained(Path(path).parent, **kwargs))
    return config, f"{repo_id} (Hugging Face Hub)"


def _hub_problem(err: Exception, repo_id: str, revision: str | None) -> str:
    """What the Hub said, in words: huggingface_hub's error classes, else unreachable."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, GatedRepoError):
        return "the repository is gated: accept its terms on its Hub page and log in (hf auth login)"
    if isinstance(err, RepositoryNotFoundError):
        return "no such repository on the Hub (or it is private: log in with hf auth login)"
    if isinstance(err, RevisionNotFoundError):
        return f"the repository has no revision {revision!r}"
    if isinstance(err, EntryNotFoundError):
        return "the repository has no config.json"
    return f"the Hub cannot be reached ({type(err).__name__})"


def _probe_hub(repo_id: str, revision: str | None) -> None:
    """One request for this repository's config.json before the download: a 401/404 answer raises
    huggingface_hub's error for it (RepositoryNotFoundError, ...) without hf_hub_download's retries."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo_id, "config.json", revision=revision)
    response = get_session().head(url, follow_redirects=True, timeout=10, headers=build_hf_headers())
    hf_raise_for_status(response)


def _no_config_error(repo_id: str, revision: str | None, why: str) -> FtError:
    option = f" --revision {revision}" if revision else ""
    return FtError(
        f"base_model: cannot read the architecture of {repo_id!r}: {why}",
        hint=f"download its config once (hf download {repo_id} config.json{option}), "
        "or point base_model at a local model folder",
    )


def build_meta_model(config: Any, trust_remote_code: bool, source: str = "") -> Any:
    """The model with every parameter on the meta device: shapes without memory."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    try:
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        model_type = getattr(config, "model_type", "?")
        raise FtError(
            f"base_model: cannot build a causal language model from {model_type} ({source}): {_first_line(err)}",
            hint="ft trains causal language models (AutoModelForCausalLM)",
        ) from err
    model.tie_weights()  # from_config leaves a tied head as its own parameter on the meta device
    return model


def _kind(name: str, module: Any, embedding_ids: set[int], head: Any) -> str:
    if module is head:
        return "head"
    if id(module) in embedding_ids:
        return "embeddings"
    if "norm" in type(module).__name__.lower() or "norm" in name.rsplit(".", 1)[-1].lower():
        return "norms"
    parts = name.lower().split(".")
    if any("attn" in p or "attention" in p for p in parts):
        return "attention"
    if any(p in ("mlp", "feed_forward", "ffn") or "mlp" in p for p in parts):
        return "mlp"
    return "other"


def count_by_kind(model: Any) -> dict[str, int]:
    """Parameters per kind; a tied head is counted once, under embeddings."""
    import torch

    head = model.get_output_embeddings()
    embedding_ids = {id(m) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    counts = dict.fromkeys(KINDS, 0)
    seen: set[int] = set()
    for name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            counts[_kind(name, module, embedding_ids, head)] += param.numel()
    return counts


def _weight_shape(module: Any) -> Shape | None:
    """(out, in) of a layer bitsandbytes or LoRA handles: nn.Linear, GPT-2's Conv1D, nn.Embedding."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return Shape(module.out_features, module.in_features)
    if type(module).__name__ == "Conv1D":  # transformers' Conv1D stores the weight as (in, out)
        inp, out = module.weight.shape
        return Shape(int(out), int(inp))
    if isinstance(module, torch.nn.Embedding):  # lora_A: r x num_embeddings, lora_B: dim x r
        return Shape(module.embedding_dim, module.num_embeddings)
    return None


def quantizable_layers(model: Any, skip_modules: list[str] | None) -> list[Shape]:
    """The layers transformers' bitsandbytes integration replaces: nn.Linear (exactly) and Conv1D,
    except the output head, tied weights, the last module and `llm_int8_skip_modules`
    (the same helpers transformers calls, run on the meta model)."""
    import torch
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    keep = HfQuantizer.get_modules_to_not_convert(model, skip_modules, model._keep_in_fp32_modules)
    shapes = []
    for name, module in model.named_modules():
        linear = type(module) is torch.nn.Linear or type(module).__name__ == "Conv1D"
        if linear and should_convert_module(name, keep):
            shape = _weight_shape(module)
            assert shape is not None
            shapes.append(shape)
    return shapes


def matmul_params(model: Any, counts: dict[str, int]) -> int:
    """Parameters that take part in a matmul per token: everything but embedding look-ups and norms;
    a tied head multiplies with the embedding matrix, so it counts once more."""
    tied = counts["head"] == 0 and model.get_output_embeddings() is not None
    head = model.get_output_embeddings().weight.numel() if tied else 0
    return counts["attention"] + counts["mlp"] + counts["head"] + counts["other"] + head


def _peft_matches(name: str, targets: list[str]) -> bool:
    # peft's rule for a list of names: the full module name, or its ending after a dot.
    return any(name == t or name.endswith("." + t) for t in targets)


def lora_tensors(
    cfg: AdapterSettings, model: Any, targets: list[str]
) -> tuple[list[Shape], list[int], list[int], list[Shape]]:
    """(adapter tensors, in_features and out_features per wrapped layer, modules_to_save tensors)
    of the adapter peft would build."""
    import torch

    tensors: list[Shape] = []
    inputs: list[int] = []
    outputs: list[int] = []
    for name, module in model.named_modules():
        if not _peft_matches(name, targets):
            continue
        shape = _weight_shape(module)
        if shape is None:
            continue
        tensors += [Shape(cfg.lora_r, shape.inp), Shape(shape.out, cfg.lora_r)]
        if cfg.peft_use_dora:
            tensors.append(Shape(shape.out, 1))  # the magnitude vector
        embedding = isinstance(module, torch.nn.Embedding)
        inputs.append(0 if embedding else shape.inp)
        outputs.append(0 if embedding else shape.out)
    saved: list[Shape] = []
    for name, module in model.named_modules():
        # peft wraps a module to save when its name ends with one of modules_to_save.
        if any(name.endswith(m) for m in cfg.lora_modules_to_save or []):
            saved += [Shape(p.shape[0], p.numel() // p.shape[0]) for p in module.parameters()]
    return tensors, inputs, outputs, saved


def with_saved_adapter(cfg: FtConfig) -> FtConfig:
    """With `lora_model_dir`, ft train continues the saved adapter with its own rank, targets,
    DoRA and modules_to_save: the config with those read from its adapter_config.json (when the
    folder is local; otherwise the config's own settings)."""
    import json

    if not cfg.lora_model_dir:
        return cfg
    path = Path(cfg.lora_model_dir).expanduser() / "adapter_config.json"
    if not path.is_file():
        return cfg
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        targets = saved["target_modules"]
        rank = int(saved["r"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FtError(
            f"lora_model_dir: cannot read {path}: {_first_line(err)}",
            hint="point it at a run folder or checkpoint written by ft train",
        ) from err
    if not isinstance(targets, list):
        raise FtError(
            f"lora_model_dir: {path} names its target modules by a pattern ({targets!r}); "
            "ft plan needs a list of module names"
        )
    return cfg.model_copy(
        update={
            "lora_r": rank,
            "lora_target_modules": [str(t) for t in targets],
            "lora_target_linear": False,
            "peft_use_dora": bool(saved.get("use_dora", False)),
            "lora_modules_to_save": list(saved.get("modules_to_save") or []) or None,
        }
    )


def inspect_model(cfg: FtConfig, skip_modules: list[str] | None) -> Architecture:
    """Everything `ft plan` needs from the model, read on the meta device."""
    config, source = load_model_config(cfg)
    model = build_meta_model(config, cfg.trust_remote_code, source)
    counts = count_by_kind(model)
    model_type = str(getattr(config, "model_type", "?"))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        hidden = int(text.hidden_size)
        heads = int(text.num_attention_heads)
        layers = int(text.num_hidden_layers)
        vocab = int(text.vocab_size)
    except AttributeError as err:
        raise FtError(
            f"base_model: ft plan does not know the layout of {model_type} models ({source}): "
            f"its config has no {err.name or 'attention heads'}",
            hint="ft plans transformer decoders (Llama, Mistral, Qwen, Phi, GPT-2, ...)",
        ) from None
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    arch = Architecture(
        source=source,
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=int(getattr(text, "intermediate_size", None) or 4 * hidden),
        num_layers=layers,
        q_dim=heads * head_dim,
        kv_dim=kv_heads * head_dim,
        vocab_size=vocab,
        counts=counts,
        quantizable=quantizable_layers(model, skip_modules),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        matmul_params=matmul_params(model, counts),
        gated_mlp=any("gate" in name.rsplit(".", 1)[-1] for name, _ in model.named_modules()),
        all_tensors=[Shape(p.shape[0], p.numel() // p.shape[0]) for p in model.parameters()],
    )
    if is_soft_prompt(cfg.adapter):
        # peft's PromptEmbedding: num_virtual_tokens x the input embeddings' width, in float32.
        arch.lora_tensors = [Shape(cfg.num_virtual_tokens, model.get_input_embeddings().embedding_dim)]
    elif cfg.adapter is not None:
        arch.lora_targets = target_modules(cfg, model)
        arch.lora_tensors, arch.lora_inputs, arch.lora_outputs, arch.saved_modules = lora_tensors(
            cfg, model, arch.lora_targets
        )
        if not arch.lora_inputs:
            raise _no_targets_error(cfg, arch)
    return arch


def _no_targets_error(cfg: AdapterSettings, arch: Architecture) -> FtError:
    if cfg.lora_target_modules:
        return FtError(
            f"lora_target_modules: none of {arch.lora_targets} is a layer of {arch.model_type}",
            hint="use the names of its linear layers, or lora_target_linear: true",
        )
    return FtError(
        f"lora_target_linear: found no linear layer to wrap in {arch.model_type}",
        hint="name the layers to wrap in lora_target_modules",
    )
