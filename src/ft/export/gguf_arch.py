"""Which transformers architectures ft writes as GGUF, and how: llama.cpp's architecture name, its
hyper-parameter keys, tensor names and the row order it expects.

The choices follow llama.cpp's reference converter (`convert_hf_to_gguf.py`, `conversion/llama.py`,
`qwen.py`, `gpt2.py`): the same keys, the same q/k permutation, so a file ft writes loads in
llama.cpp, Ollama and LM Studio exactly as one written by the converter. Anything not in
`ARCHITECTURES` is refused by name before any weight is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from ft.base.errors import FtError

HParams = dict[str, Any]


@dataclass(frozen=True)
class GgufArch:
    """How one transformers architecture becomes a llama.cpp model."""

    name: str
    """transformers' class name (config.json `architectures[0]`)."""
    arch: gguf.MODEL_ARCH
    permute_qk: bool = False
    """llama.cpp's Llama rotates pairs of rows where transformers rotates halves: q and k rows are
    reordered per head (`LlamaModel.permute` in the converter)."""
    transposed: tuple[str, ...] = ()
    """Weight names stored as Conv1D (in, out) that llama.cpp wants as (out, in): GPT-2."""
    llama_keys: bool = False
    """Llama adds vocab_size and rope.dimension_count to the common keys."""

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]


ARCHITECTURES: dict[str, GgufArch] = {
    "LlamaForCausalLM": GgufArch("LlamaForCausalLM", gguf.MODEL_ARCH.LLAMA, permute_qk=True, llama_keys=True),
    "MistralForCausalLM": GgufArch(
        "MistralForCausalLM", gguf.MODEL_ARCH.LLAMA, permute_qk=True, llama_keys=True
    ),
    "Qwen2ForCausalLM": GgufArch("Qwen2ForCausalLM", gguf.MODEL_ARCH.QWEN2),
    "GPT2LMHeadModel": GgufArch(
        "GPT2LMHeadModel",
        gguf.MODEL_ARCH.GPT2,
        transposed=(".c_attn.weight", ".c_proj.weight", ".c_fc.weight"),
    ),
}
SKIPPED_SUFFIXES = (
    ".attention.masked_bias",
    ".attention.bias",
    ".rotary_emb.inv_freq",
    ".attn.bias",
    ".attn.masked_bias",
)
"""Buffers some checkpoints save that are not weights (the converter skips them too)."""


def arch_for(hparams: HParams, source: str) -> GgufArch:
    """The export recipe for a model's config.json; FtError naming the architecture otherwise."""
    names = hparams.get("architectures") or []
    name = names[0] if names else str(hparams.get("model_type"))
    found = ARCHITECTURES.get(name)
    if found is None:
        raise FtError(
            f"{source}: ft cannot write {name} as GGUF yet",
            hint="supported: " + ", ".join(ARCHITECTURES) + "; llama.cpp's convert_hf_to_gguf.py "
            "converts the merged folder for other architectures",
        )
    return found


def block_count(hparams: HParams) -> int:
    return int(_find(hparams, "num_hidden_layers", "n_layer"))


def tensor_name_map(recipe: GgufArch, hparams: HParams) -> gguf.TensorNameMap:
    return gguf.get_tensor_name_map(recipe.arch, block_count(hparams))


def gguf_tensor_name(names: gguf.TensorNameMap, name: str, source: str) -> str:
    mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
    if mapped is None:
        raise FtError(
            f"{source}: tensor {name!r} has no llama.cpp name", hint="this checkpoint is not supported"
        )
    return mapped


# ---------------------------------------------------------------------------------------------
# Rows


def permute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order: within each head, the two rotary halves interleaved."""
    shape = rows.shape
    return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def row_transform(recipe: GgufArch, hparams: HParams, name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """What a whole tensor needs before it is written (None: nothing, rows can stream)."""
    if recipe.permute_qk:
        n_head = int(hparams["num_attention_heads"])
        n_kv = int(hparams.get("num_key_value_heads") or n_head)
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            return lambda rows: permute_rows(rows, n_head)
        if name.endswith(("k_proj.weight", "k_proj.bias")):
            return lambda rows: permute_rows(rows, n_kv)
    if name.endswith(recipe.transposed):
        return lambda rows: np.ascontiguousarray(rows.T)
    return None


def output_shape(recipe: GgufArch, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(reversed(shape)) if name.endswith(recipe.transposed) else shape


# ---------------------------------------------------------------------------------------------
# Hyper-parameters


def _find(hparams: HParams, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if hparams.get(key) is not None:
            return hparams[key]
    if default is not None:
        return default
    raise FtError(
        f"config.json has none of {list(keys)}", hint="the model folder's config.json is incomplete"
    )


def rope_parameters(hparams: HParams) -> dict[str, Any]:
    """transformers 5 keeps rope settings in `rope_parameters`, older configs in `rope_scaling`."""
    params = dict(hparams.get("rope_parameters") or hparams.get("rope_scaling") or {})
    if "rope_theta" not in params and hparams.get("rope_theta") is not None:
        params["rope_theta"] = hparams["rope_theta"]
    if "rope_type" not in params and params.get("type") is not None:
        params["rope_type"] = params["type"]
    return params


def write_hparams(writer: gguf.GGUFWriter, recipe: GgufArch, hparams: HParams) -> None:
    """The converter's TextModel.set_gguf_parameters, for the keys these architectures have."""
    if recipe.arch == gguf.MODEL_ARCH.GPT2:
        _write_gpt2_hparams(writer, hparams)
        return
    writer.add_block_count(block_count(hparams))
    writer.add_context_length(int(hparams["max_position_embeddings"]))
    writer.add_embedding_length(int(hparams["hidden_size"]))
    writer.add_feed_forward_length(int(hparams["intermediate_size"]))
    n_head = int(hparams["num_attention_heads"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(int(hparams.get("num_key_value_heads") or n_head))
    rope = rope_parameters(hparams)
    _write_rope_scaling(writer, rope)
    if rope.get("rope_theta") is not None:
        writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(_find(hparams, "rms_norm_eps", "norm_eps")))
    if hparams.get("head_dim") is not None:
        writer.add_key_length(int(hparams["head_dim"]))
        writer.add_value_length(int(hparams["head_dim"]))
    if recipe.llama_keys:
        writer.add_vocab_size(int(hparams["vocab_size"]))
        writer.add_rope_dimension_count(int(hparams.get("head_dim") or int(hparams["hidden_size"]) // n_head))


def _write_gpt2_hparams(writer: gguf.GGUFWriter, hparams: HParams) -> None:
    writer.add_block_count(block_count(hparams))
    writer.add_context_length(int(_find(hparams, "n_ctx", "n_positions")))
    writer.add_embedding_length(int(hparams["n_embd"]))
    writer.add_feed_forward_length(int(hparams.get("n_inner") or 4 * int(hparams["n_embd"])))
    writer.add_head_count(int(hparams["n_head"]))
    writer.add_layer_norm_eps(float(hparams["layer_norm_epsilon"]))


def _write_rope_scaling(writer: gguf.GGUFWriter, rope: dict[str, Any]) -> None:
    kind = str(rope.get("rope_type") or "default").lower()
    factor = rope.get("factor")
    if kind == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    elif kind == "yarn" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(factor))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif kind not in ("default", "llama3"):  # llama3 is a tensor (rope_freqs), written with the weights
        raise FtError(
            f"config.json: rope_type {kind!r} is not written to GGUF by ft",
            hint="llama.cpp's convert_hf_to_gguf.py converts the merged folder",
        )


def llama3_rope_factors(hparams: HParams) -> np.ndarray | None:
    """Llama 3.1+ stores its long-context rope scaling as a `rope_freqs` tensor (the converter's
    LlamaModel.generate_extra_tensors); None for other rope types."""
    rope = rope_parameters(hparams)
    if str(rope.get("rope_type") or "").lower() != "llama3":
        return None
    base = float(rope.get("rope_theta", 10000.0))
    dim = int(hparams.get("head_dim") or int(hparams["hidden_size"]) // int(hparams["num_attention_heads"]))
    factor = float(rope.get("factor", 8.0))
    low_freq_factor = float(rope.get("low_freq_factor", 1.0))
    high_freq_factor = float(rope.get("high_freq_factor", 4.0))
    old_context = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_context / low_freq_factor, old_context / high_freq_factor
    # In float32 torch arithmetic, as the converter computes it, so the bytes are the same.
    import torch

    factors: list[Any] = []
    for freq in 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32).numpy()
