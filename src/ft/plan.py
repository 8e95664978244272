"""`ft plan`: the memory and the time of a run, before renting a GPU.

`build_plan` reads the architecture (config.json only), counts parameters on the meta device and
adds up, line by line, what a GPU holds during `ft train` at the configured settings. The
formulas live in `ft.plan_memory`; this module only assembles them into a `Plan`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ft.errors import FtError
from ft.model import Precision, bnb_settings, quantization_bits, resolve_precision
from ft.plan_memory import (
    CUDA_CONTEXT_BYTES,
    DEFAULT_MFU,
    DTYPE_BYTES,
    FRAGMENTATION,
    GIB,
    GPUS,
    Gpu,
    activation_bytes,
    find_gpu,
    flops_multiplier,
    optimizer_state_bytes,
    quantized_weight_bytes,
    training_flops,
)
from ft.plan_model import Architecture, inspect_model
from ft.plan_tokens import Tokens, count_training_tokens
from ft.schema import FtConfig


@dataclass(frozen=True)
class MemoryLine:
    key: str
    label: str
    bytes: int
    note: str = ""


@dataclass(frozen=True)
class GpuFit:
    name: str
    memory_bytes: int
    fits: bool
    tflops: float | None
    hours: float | None
    """Training time at the stated utilisation; None when the token count is unknown."""
    hours_per_million_tokens: float | None


@dataclass
class Plan:
    base_model: str
    architecture_source: str
    model_type: str
    parameters: dict[str, int]
    trainable_parameters: int
    adapter: dict[str, Any] | None
    precision: dict[str, Any]
    memory: list[MemoryLine]
    total_bytes: int
    gpus: list[GpuFit]
    budget: GpuFit | None
    tokens: Tokens
    flops: float | None
    flops_formula: str
    mfu: float
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build_plan(
    cfg: FtConfig,
    gpu: str | None = None,
    memory_bytes: int | None = None,
    mfu: float = DEFAULT_MFU,
    count_tokens: bool = True,
) -> Plan:
    """The plan of `ft train` for this config; `gpu` picks a row of the table, `memory_bytes` sets a
    custom budget (both optional). Raises FtError for an unknown GPU or an unreadable model."""
    chosen = _pick_gpu(gpu)
    precision = resolve_precision(cfg, has_cuda=True, bf16_supported=chosen.bf16 if chosen else True)
    bits = quantization_bits(cfg)
    skip = bnb_settings(cfg, precision).get("llm_int8_skip_modules") if bits else None
    arch = inspect_model(cfg, skip)
    tokens = count_training_tokens(cfg) if count_tokens else Tokens(None, "unknown: not counted")
    memory = memory_lines(cfg, arch, precision, bits, tokens.longest)
    total = sum(line.bytes for line in memory)
    full = cfg.adapter is None
    flops = training_flops(arch, tokens.total, full, cfg.gradient_checkpointing) if tokens.total else None
    per_million = training_flops(arch, 1_000_000, full, cfg.gradient_checkpointing)
    gpus = [_fit(g.name, g.memory_gib * GIB, g.tflops, total, flops, per_million, mfu) for g in GPUS]
    budget = None
    if memory_bytes is not None:
        budget = _fit("--memory", memory_bytes, None, total, flops, per_million, mfu)
    elif chosen is not None:
        budget = next(fit for fit in gpus if fit.name == chosen.name)
    trainable = arch.lora_params if cfg.adapter else arch.total_params
    return Plan(
        base_model=cfg.base_model,
        architecture_source=arch.source,
        model_type=arch.model_type,
        parameters={**arch.counts, "total": arch.total_params},
        trainable_parameters=trainable,
        adapter=_adapter_info(cfg, arch),
        precision={
            "weights": _weights_name(cfg, bits, precision),
            "compute_dtype": precision.compute_dtype,
            "optimizer": cfg.optimizer,
        },
        memory=memory,
        total_bytes=total,
        gpus=gpus,
        budget=budget,
        tokens=tokens,
        flops=flops,
        flops_formula=f"{flops_multiplier(full, cfg.gradient_checkpointing)} x {arch.matmul_params:,} "
        "matmul parameters x tokens",
        mfu=mfu,
        assumptions=_assumptions(cfg, mfu, precision.compute_dtype),
    )


def _pick_gpu(name: str | None) -> Gpu | None:
    if name is None:
        return None
    gpu = find_gpu(name)
    if gpu is None:
        raise FtError(
            f"--gpu: no single GPU of the table matches {name!r}",
            hint="use one of: " + ", ".join(g.name for g in GPUS),
        )
    return gpu


def _fit(
    name: str,
    memory: int,
    tflops: float | None,
    total: int,
    flops: float | None,
    per_million: float,
    mfu: float,
) -> GpuFit:
    def hours(work: float | None) -> float | None:
        return work / (tflops * 1e12 * mfu) / 3600 if work and tflops else None

    return GpuFit(name, memory, total <= memory, tflops, hours(flops), hours(per_million))


def _weights_name(cfg: FtConfig, bits: int | None, precision: Precision) -> str:
    if bits == 4:
        quant = cfg.bnb_4bit_quant_type.upper() + (" + double quant" if cfg.bnb_4bit_use_double_quant else "")
        return f"{quant}, other layers {precision.weights_dtype(False)}"
    if bits == 8:
        return f"int8 (LLM.int8), other layers {precision.weights_dtype(False)}"
    return precision.weights_dtype(cfg.adapter is None)


def _adapter_info(cfg: FtConfig, arch: Architecture) -> dict[str, Any] | None:
    if cfg.adapter is None:
        return None
    return {
        "kind": cfg.adapter,
        "rank": cfg.lora_r,
        "targets": arch.lora_targets,
        "wrapped_layers": len(arch.lora_inputs),
        "parameters": arch.lora_params,
        "dora": cfg.peft_use_dora,
        "modules_to_save": list(cfg.lora_modules_to_save or []),
    }


def memory_lines(
    cfg: FtConfig, arch: Architecture, precision: Precision, bits: int | None, longest: int | None = None
) -> list[MemoryLine]:
    """Every block of GPU memory `ft train` holds at its peak, in bytes."""
    full = cfg.adapter is None
    weights_dtype = precision.weights_dtype(full)
    width = DTYPE_BYTES[weights_dtype]
    lines = _weight_lines(cfg, arch, bits, weights_dtype)
    if full:
        trainable, param_bytes = arch.all_tensors, width
    else:
        trainable, param_bytes = arch.lora_tensors, 4  # peft keeps adapter weights in float32
        lines.append(
            MemoryLine(
                "adapter",
                f"{cfg.adapter} adapter weights (r={cfg.lora_r}, float32)",
                4 * arch.lora_params,
                f"{arch.lora_params:,} parameters on {len(arch.lora_inputs)} layers",
            )
        )
    count = sum(t.numel for t in trainable)
    lines.append(
        MemoryLine("gradients", "gradients", param_bytes * count, f"{count:,} x {param_bytes} bytes")
    )
    lines.append(
        MemoryLine(
            "optimizer",
            f"optimizer states ({cfg.optimizer})",
            optimizer_state_bytes(cfg.optimizer, trainable, param_bytes),
            "paged: may spill to CPU memory under pressure" if cfg.optimizer.startswith("paged") else "",
        )
    )
    lines += _activation_lines(cfg, arch, precision, longest)
    tensors = sum(line.bytes for line in lines)
    lines.append(
        MemoryLine(
            "overhead",
            "CUDA context + fragmentation",
            CUDA_CONTEXT_BYTES + int(FRAGMENTATION * tensors),
            f"1 GiB + {FRAGMENTATION:.0%} of the above",
        )
    )
    return lines


def _weight_lines(cfg: FtConfig, arch: Architecture, bits: int | None, dtype: str) -> list[MemoryLine]:
    width = DTYPE_BYTES[dtype]
    if not bits:
        return [
            MemoryLine(
                "weights",
                f"base weights ({dtype})",
                width * arch.total_params + arch.buffer_bytes,
                f"{arch.total_params:,} x {width} bytes",
            )
        ]
    double = bits == 4 and cfg.bnb_4bit_use_double_quant
    data, constants = quantized_weight_bytes(arch.quantizable, bits, double)
    kind = f"{cfg.bnb_4bit_quant_type.upper()}{' + double quant' if double else ''}" if bits == 4 else "int8"
    kept = arch.total_params - arch.quantizable_params
    lines = [
        MemoryLine(
            "weights_quantized",
            f"base weights, {kind}",
            data + constants,
            f"{arch.quantizable_params:,} parameters: {data:,} packed + {constants:,} scales",
        ),
        MemoryLine(
            "weights_kept",
            f"base weights kept in {dtype} (embeddings, head, norms)",
            width * kept + arch.buffer_bytes,
            f"{kept:,} x {width} bytes",
        ),
    ]
    if cfg.adapter is not None and width < 4:
        lines.append(
            MemoryLine(
                "weights_upcast",
                "those cast to float32 for training",
                (4 - width) * kept,
                "peft's prepare_model_for_kbit_training",
            )
        )
    return lines


def _activation_lines(
    cfg: FtConfig, arch: Architecture, precision: Precision, longest: int | None
) -> list[MemoryLine]:
    """For a micro-batch of full-length rows: sequence_len, or the longest counted row, since a
    batch is padded only to its longest row (packed and pad_to_sequence_len batches are full)."""
    full = cfg.sample_packing or cfg.pad_to_sequence_len or longest is None
    length = cfg.sequence_len if full else min(longest or 0, cfg.sequence_len)
    tokens = cfg.micro_batch_size * length
    acts = activation_bytes(
        arch,
        tokens,
        DTYPE_BYTES[precision.compute_dtype],
        cfg.gradient_checkpointing,
        cfg.lora_dropout > 0,
        cfg.lora_r if cfg.adapter else 0,
    )
    other = activation_bytes(
        arch, tokens, DTYPE_BYTES[precision.compute_dtype], not cfg.gradient_checkpointing,
        cfg.lora_dropout > 0, cfg.lora_r if cfg.adapter else 0,
    )  # fmt: skip
    state = "on" if cfg.gradient_checkpointing else "off"
    return [
        MemoryLine(
            "activations",
            f"activations (gradient checkpointing {state})",
            acts.layers,
            f"{cfg.micro_batch_size} x {length} tokens; {'off' if state == 'on' else 'on'}: "
            f"{other.layers / GIB:.2f} GiB",
        ),
        MemoryLine(
            "logits", "logits and loss", acts.logits, f"{tokens:,} tokens x vocab {arch.vocab_size:,}"
        ),
    ]


def _assumptions(cfg: FtConfig, mfu: float, compute_dtype: str) -> list[str]:
    slow = (
        [
            "compute is float32 (bf16/fp16 off): tensor cores run far below their 16-bit peak, so the times are too short"
        ]
        if compute_dtype == "float32"
        else []
    )
    return [
        *slow,
        f"activations for a micro-batch of micro_batch_size {cfg.micro_batch_size} rows of the longest "
        "length (sequence_len, or the longest counted row), fused attention (SDPA/flash), one GPU",
        f"CUDA context 1 GiB; fragmentation {FRAGMENTATION:.0%} of the tensors",
        f"time: {mfu:.0%} of each GPU's dense 16-bit tensor peak (MFU); attention's seq x seq work "
        "and 4-bit dequantization not counted",
    ]
