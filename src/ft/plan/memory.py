"""The formulas of `ft plan`: bytes of stored weights, adapter, gradients, optimizer states and
activations, and the GPU table. Pure arithmetic on an `Architecture`; nothing is imported lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ft.plan.architecture import Architecture, Shape

GIB = 2**30
NF4_BLOCK = 64
"""bitsandbytes' 4-bit block: one absmax scale per 64 weights (bitsandbytes.functional.quantize_4bit)."""
DOUBLE_QUANT_BLOCK = 256
"""Double quantization stores the absmax scales in 8 bit, one float32 scale per 256 of them."""
BNB_8BIT_MIN_SIZE = 4096
"""bitsandbytes' 8-bit optimizers keep 32-bit states for tensors smaller than this (min_8bit_size)."""
CUDA_CONTEXT_BYTES = GIB
"""CUDA context, cuBLAS workspace and the loaded kernels: about 0.5-1 GiB; 1 GiB is assumed."""
FRAGMENTATION = 0.10
"""Allocator fragmentation and cached blocks, as a share of the tensors' bytes (an assumption)."""
DEFAULT_MFU = 0.40
"""Model FLOPs utilisation assumed for the time estimate: 40% of the GPU's dense 16-bit peak."""

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_KIND = {
    "adamw_torch": "adamw",
    "adamw_torch_fused": "adamw",
    "paged_adamw_32bit": "adamw32",
    "adamw_8bit": "adamw8bit",
    "adamw_bnb_8bit": "adamw8bit",
    "paged_adamw_8bit": "adamw8bit",
    "adafactor": "adafactor",
    "sgd": "sgd",
}


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: int
    tflops: float
    """Dense (no sparsity) 16-bit tensor-core peak: bf16, or fp16 where the GPU has no bf16."""
    bf16: bool


GPUS = (
    Gpu("T4", 16, 65.0, bf16=False),
    Gpu("L4", 24, 121.0, bf16=True),
    Gpu("RTX 4090", 24, 165.2, bf16=True),
    Gpu("A100 40GB", 40, 312.0, bf16=True),
    Gpu("L40S", 48, 362.0, bf16=True),
    Gpu("A100 80GB", 80, 312.0, bf16=True),
    Gpu("H100 SXM", 80, 989.0, bf16=True),
)


OTHER_GPUS = {
    "V100": "16 or 32 GB, no bfloat16",
    "P100": "16 GB, no bfloat16",
    "K80": "12 GB per GPU, no bfloat16",
    "A10": "24 GB",
    "A10G": "24 GB",
    "A40": "48 GB",
    "A6000": "48 GB",
    "RTX 3090": "24 GB",
    "RTX 4080": "16 GB",
    "H200": "141 GB",
    "MI250": "64 GB per GPU",
    "MI300X": "192 GB",
}
"""GPUs not in the table (no peak FLOPs of ours for them): what to pass as --memory instead."""


def other_gpu_hint(name: str) -> str | None:
    """For a known GPU outside the table: its memory and the --memory to give (the largest size)."""
    key = name.lower().replace(" ", "").replace("-", "")
    for gpu, what in OTHER_GPUS.items():
        if gpu.lower().replace(" ", "") == key:
            sizes = [int(word) for word in what.replace(",", " ").split() if word.isdigit()]
            return f"the {gpu} is not in the table ({what}): plan for its memory with --memory {max(sizes)}GB"
    return None


def find_gpu(name: str) -> Gpu | None:
    """The GPU whose name is `name` (case, spaces and dashes ignored), or the only one whose name
    starts with it or has it as a word ('4090' for 'RTX 4090'); None when none or several match."""

    def squash(text: str) -> str:
        return text.lower().replace(" ", "").replace("-", "")

    key = squash(name)
    for gpu in GPUS:
        if squash(gpu.name) == key:
            return gpu
    matches = [g for g in GPUS if squash(g.name).startswith(key) or key in g.name.lower().split()]
    return matches[0] if len(matches) == 1 and key else None


def quantized_weight_bytes(shapes: list[Shape], bits: int, double_quant: bool) -> tuple[int, int]:
    """(packed weights, quantization constants) as bitsandbytes stores them.

    4-bit: two weights per uint8, one float32 absmax per block of 64 (0.5 bit per weight), or with
    double quantization one uint8 per block plus a float32 per 256 blocks (0.127 bit per weight),
    and the 16-value code. 8-bit (LLM.int8): one int8 per weight, one float32 scale per row (SCB).
    """
    data = constants = 0
    for shape in shapes:
        if bits == 8:
            data += shape.numel
            constants += 4 * shape.out
            continue
        data += (shape.numel + 1) // 2
        blocks = math.ceil(shape.numel / NF4_BLOCK)
        if double_quant:
            constants += blocks + 4 * math.ceil(blocks / DOUBLE_QUANT_BLOCK) + 4  # + the offset
        else:
            constants += 4 * blocks
        constants += 16 * 4
    return data, constants


def optimizer_state_bytes(optimizer: str, tensors: list[Shape], param_bytes: int) -> int:
    """AdamW keeps two states per parameter (in the parameter's dtype for torch's AdamW; float32
    whatever the parameter's dtype for bitsandbytes' 32-bit paged AdamW; 8-bit blockwise with a
    float32 scale per 256 for bitsandbytes' 8-bit AdamW); Adafactor keeps factored row and column
    statistics; SGD (no momentum, the Trainer's default) keeps nothing."""
    kind = OPTIMIZER_KIND.get(optimizer, "adamw")
    total = 0
    for t in tensors:
        if kind == "adamw":
            total += 2 * param_bytes * t.numel
        elif kind == "adamw32":
            total += 2 * 4 * t.numel
        elif kind == "adamw8bit":
            if t.numel < BNB_8BIT_MIN_SIZE:
                total += 2 * 4 * t.numel
            else:
                total += 2 * (t.numel + 4 * math.ceil(t.numel / 256))
        elif kind == "adafactor":
            total += 4 * (t.out + t.inp if t.inp > 1 else t.out)
    return total


@dataclass(frozen=True)
class Activations:
    layers: int
    logits: int


@dataclass(frozen=True)
class ActivationWidths:
    """Bytes per element of what autograd keeps."""

    compute: int
    """The autocast dtype: attention's q, k, v and output, LoRA's input copies."""
    stream: int
    """The residual stream, which gradient checkpointing keeps at each layer's input: the
    embeddings' dtype (float32 after prepare_model_for_kbit_training, or as fp16 master weights)."""
    mlp: int
    """The MLP's intermediate activations: the compute dtype, or the stream's for bitsandbytes
    layers, which return their input's dtype (Linear4bit: `.to(inp_dtype)`)."""


def activation_widths(compute_bytes: int, weight_bytes: int, kbit_adapter: bool) -> ActivationWidths:
    if kbit_adapter:  # prepare_model_for_kbit_training: embeddings and norms in float32
        return ActivationWidths(compute_bytes, 4, 4)
    return ActivationWidths(compute_bytes, weight_bytes, compute_bytes)


def activation_bytes(
    arch: Architecture,
    tokens: int,
    widths: ActivationWidths,
    checkpointing: bool,
    lora_dropout: bool,
    lora_rank: int,
    dora: bool = False,
) -> Activations:
    """What autograd keeps for a micro-batch of `tokens` tokens, for a frozen base (with LoRA) or a
    full fine-tune, with a fused attention kernel (SDPA/flash: no seq x seq matrix is kept).

    Per layer and token: each norm keeps its float32 input (4h bytes); attention keeps q, k, v and
    its output (2q + 2kv elements of the compute dtype, q = heads x head_dim); a gated MLP keeps gate, up and act(gate)
    (3i), an fc1/fc2 MLP fc1's output and its activation (2i), in the MLP width (float32 for QLoRA,
    whose 4-bit layers return the float32 stream's dtype); each LoRA-wrapped layer keeps a copy of
    its input (in the compute dtype; with dropout also peft's float32 copy and the mask: 4 bytes
    more) and lora_A's output (r float32). A full fine-tune also keeps the input of every linear
    layer for its weight gradient (4h + i); with float32 master weights (fp16) the norms keep
    float32 outputs (2(4 - a)h bytes more) and autocast casts them once per linear layer reading
    them (q, k, v; gate, up: 3ah more). With gradient checkpointing only each layer's input
    (h, in the stream's dtype) is kept, plus one layer recomputed during the backward.
    DoRA (peft 0.21) keeps, per wrapped layer, its base and LoRA outputs (2 out per token); for
    the weight's norm it passes an in x in identity matrix (float32, and its 16-bit autocast copy)
    through lora_A, one layer at a time (the graph is detached), counted once for the widest. Logits: the
    head's output, a float32 copy for the loss and float32 gradients at the start of the
    backward: vocab x (compute + 12) bytes per token. The per-layer bytes are checked against
    autograd's saved tensors in tests/test_plan.py.
    """
    h, i, a = arch.hidden_size, arch.intermediate_size, widths.compute
    attention = a * (2 * arch.q_dim + 2 * arch.kv_dim)
    per_token = 2 * 4 * h + attention + widths.mlp * (3 if arch.gated_mlp else 2) * i
    if arch.lora_inputs:
        per_layer_inputs = sum(arch.lora_inputs) / arch.num_layers
        wrapped_per_layer = len(arch.lora_inputs) / arch.num_layers
        per_token += int(
            per_layer_inputs * (a + (4 if lora_dropout else 0)) + wrapped_per_layer * 4 * lora_rank
        )
    else:
        per_token += a * (4 * h + i)
        if widths.stream > a:  # float32 master weights: the norms' outputs are float32, and autocast
            # casts them once per linear layer that reads them (q, k, v; gate, up)
            per_token += 2 * h * (widths.stream - a) + a * h * (3 if arch.gated_mlp else 2)
    transient = 0
    if dora and arch.lora_inputs:
        per_token += 2 * a * sum(arch.lora_outputs) // arch.num_layers
        transient = (4 + a) * max(arch.lora_inputs) ** 2
    if checkpointing:
        layers = tokens * (arch.num_layers * widths.stream * h + per_token) + transient
    else:
        layers = tokens * arch.num_layers * per_token + transient
    return Activations(layers, tokens * arch.vocab_size * (a + 12))


def training_flops(
    arch: Architecture, tokens: int, full_finetune: bool, checkpointing: bool, reference: bool = False
) -> float:
    """2 N per token forward, 2 N backward to the inputs, 2 N more for the weight gradients of a
    full fine-tune (6 N in all: Kaplan et al. 2020), 2 N more to recompute the forward under
    gradient checkpointing, 2 N more for a reference model's forward (DPO); N = parameters in
    matmuls (the head included, embeddings not). LoRA's own matmuls are under 1% of N and left
    out; so is attention's seq x seq work."""
    return float(flops_multiplier(full_finetune, checkpointing, reference)) * arch.matmul_params * tokens


def flops_multiplier(full_finetune: bool, checkpointing: bool, reference: bool = False) -> int:
    return 4 + (2 if full_finetune else 0) + (2 if checkpointing else 0) + (2 if reference else 0)
