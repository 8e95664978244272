"""`ft plan`: the memory and the time of a run, before renting a GPU.

`build_plan` reads the architecture (config.json only), counts parameters on the meta device and
adds up, line by line, what a GPU holds during `ft train` at the configured settings. The
formulas live in `ft.plan.memory`; this module only assembles them into a `Plan`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ft.base.errors import FtError
from ft.config.schema import AdapterSettings, FtConfig, PreferenceSettings, TrainingSettings
from ft.models.adapter import is_soft_prompt
from ft.models.precision import Precision, bnb_settings, quantization_bits, resolve_precision
from ft.plan.architecture import Architecture, Shape, inspect_model, with_saved_adapter
from ft.plan.memory import (
    CUDA_CONTEXT_BYTES,
    DEFAULT_MFU,
    DTYPE_BYTES,
    FRAGMENTATION,
    GIB,
    GPUS,
    Gpu,
    activation_bytes,
    activation_widths,
    find_gpu,
    flops_multiplier,
    optimizer_state_bytes,
    other_gpu_hint,
    quantized_weight_bytes,
    training_flops,
)
from ft.plan.tokens import Tokens, count_training_tokens


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
    needs_bytes: int | None
    """The run's total on this GPU (its precision: fp16 where it has no bf16); None when it cannot run."""
    compute_dtype: str | None
    why_not: str = ""
    """Why the run cannot use this GPU at all (e.g. 'no bfloat16'); empty otherwise."""
    hours: float | None = None
    """Training time at the stated utilisation; None when the token count is unknown."""
    hours_per_million_tokens: float | None = None


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
    custom budget (both optional). The memory lines are those of the chosen GPU's precision (a GPU
    with bf16 when none is chosen); each row of the GPU table has the total at its own precision.
    Raises FtError for an unknown GPU, a bf16 run on a GPU without it, or an unreadable model."""
    chosen = pick_gpu(gpu)
    cfg = with_saved_adapter(cfg)
    by_bf16 = {supported: _precision_on(cfg, supported) for supported in (True, False)}
    shown = chosen.bf16 if chosen else True
    precision = by_bf16[shown]
    if precision is None:
        assert chosen is not None
        raise FtError(
            f"--gpu {chosen.name}: bf16 is true, but the {chosen.name} has no bfloat16",
            hint="set bf16: auto (falls back to fp16) or fp16: true, or choose a GPU with bf16",
        )
    bits = quantization_bits(cfg)
    skip = bnb_settings(cfg, precision).get("llm_int8_skip_modules") if bits else None
    arch = inspect_model(cfg, skip)
    tokens = count_training_tokens(cfg) if count_tokens else Tokens(None, "unknown: not counted")
    memory_by_bf16 = {
        supported: memory_lines(cfg, arch, p, bits, tokens.longest) if p else None
        for supported, p in by_bf16.items()
    }
    memory = memory_by_bf16[shown]
    assert memory is not None
    total = _total(memory)
    full = cfg.adapter is None
    reference = has_reference_pass(cfg)
    ckpt = cfg.gradient_checkpointing
    flops = training_flops(arch, tokens.total, full, ckpt, reference) if tokens.total else None
    per_million = training_flops(arch, 1_000_000, full, ckpt, reference)
    work = (flops, per_million, mfu)
    # The GPU asked for first, then the table in its order.
    ordered = sorted(GPUS, key=lambda g: chosen is None or g.name != chosen.name)
    gpus = [_gpu_fit(g, by_bf16[g.bf16], memory_by_bf16[g.bf16], work) for g in ordered]
    budget = None
    if memory_bytes is not None:
        budget = _fit("--memory", memory_bytes, None, total, precision.compute_dtype, work)
    elif chosen is not None:
        budget = next(fit for fit in gpus if fit.name == chosen.name)
    trainable = arch.lora_params + arch.saved_module_params if cfg.adapter else arch.total_params
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
        flops_formula=f"{flops_multiplier(full, ckpt, reference)} x {arch.matmul_params:,} "
        f"matmul parameters x tokens{' (both sequences of each pair)' if cfg.rl else ''}",
        mfu=mfu,
        assumptions=_assumptions(cfg, mfu, precision.compute_dtype, bits),
    )


def _precision_on(cfg: FtConfig, bf16_supported: bool) -> Precision | None:
    """How `ft train` computes on a GPU with or without bf16; None when it refuses (bf16: true)."""
    try:
        return resolve_precision(cfg, has_cuda=True, bf16_supported=bf16_supported)
    except FtError:
        return None


def _total(memory: list[MemoryLine]) -> int:
    return sum(line.bytes for line in memory)


def pick_gpu(name: str | None) -> Gpu | None:
    """The GPU of the table `--gpu` names; FtError (with the --memory to give for a known GPU
    outside the table) when none or several match."""
    if name is None:
        return None
    gpu = find_gpu(name)
    if gpu is None:
        table = "use one of: " + ", ".join(g.name for g in GPUS)
        other = other_gpu_hint(name)
        raise FtError(
            f"--gpu: no single GPU of the table matches {name!r}",
            hint=f"{other}; or {table}" if other else table,
        )
    return gpu


Work = tuple[float | None, float, float]
"""(training FLOPs or None when the tokens are unknown, FLOPs per million tokens, MFU)."""


def _gpu_fit(gpu: Gpu, precision: Precision | None, memory: list[MemoryLine] | None, work: Work) -> GpuFit:
    if precision is None or memory is None:
        return GpuFit(gpu.name, gpu.memory_gib * GIB, False, gpu.tflops, None, None, "no bfloat16")
    return _fit(gpu.name, gpu.memory_gib * GIB, gpu.tflops, _total(memory), precision.compute_dtype, work)


def _fit(name: str, memory: int, tflops: float | None, total: int, compute_dtype: str, work: Work) -> GpuFit:
    flops, per_million, mfu = work

    def hours(amount: float | None) -> float | None:
        return amount / (tflops * 1e12 * mfu) / 3600 if amount and tflops else None

    return GpuFit(
        name,
        memory,
        total <= memory,
        tflops,
        total,
        compute_dtype,
        hours=hours(flops),
        hours_per_million_tokens=hours(per_million),
    )


def _weights_name(cfg: FtConfig, bits: int | None, precision: Precision) -> str:
    if bits == 4:
        quant = cfg.bnb_4bit_quant_type.upper() + (" + double quant" if cfg.bnb_4bit_use_double_quant else "")
        return f"{quant}, other layers {precision.weights_dtype(False)}"
    if bits == 8:
        return f"int8 (LLM.int8), other layers {precision.weights_dtype(False)}"
    return precision.weights_dtype(cfg.adapter is None)


def _adapter_info(cfg: AdapterSettings, arch: Architecture) -> dict[str, Any] | None:
    if cfg.adapter is None:
        return None
    if is_soft_prompt(cfg.adapter):
        return {
            "kind": cfg.adapter,
            "virtual_tokens": cfg.num_virtual_tokens,
            "init": cfg.prompt_tuning_init,
            "parameters": arch.lora_params,
        }
    return {
        "kind": cfg.adapter,
        "rank": cfg.lora_r,
        "targets": arch.lora_targets,
        "wrapped_layers": len(arch.lora_inputs),
        "parameters": arch.lora_params,
        "dora": cfg.peft_use_dora,
        "modules_to_save": list(cfg.lora_modules_to_save or []),
        "modules_to_save_parameters": arch.saved_module_params,
        "from": cfg.lora_model_dir,
    }


def memory_lines(
    cfg: FtConfig, arch: Architecture, precision: Precision, bits: int | None, longest: int | None = None
) -> list[MemoryLine]:
    """Every block of GPU memory `ft train` holds at its peak, in bytes."""
    full = cfg.adapter is None
    weights_dtype = precision.weights_dtype(full)
    width = DTYPE_BYTES[weights_dtype]
    lines = _weight_lines(cfg, arch, bits, weights_dtype)
    lines += _reference_lines(cfg, arch, lines)
    if full:
        groups = [(arch.all_tensors, width)]
    else:
        # peft keeps the adapter in float32, the modules_to_save copies in the base dtype (float32
        # after prepare_model_for_kbit_training).
        saved_width = 4 if bits else width
        groups = [(arch.lora_tensors, 4), (arch.saved_modules, saved_width)]
        lines.append(_adapter_line(cfg, arch, saved_width))
    lines += _training_state_lines(cfg, groups)
    lines += _autocast_copy_lines(cfg, arch, precision, bits, width)
    lines += _activation_lines(cfg, arch, precision, bits, width, longest)
    tensors = _total(lines)
    lines.append(
        MemoryLine(
            "overhead",
            "CUDA context + fragmentation",
            CUDA_CONTEXT_BYTES + int(FRAGMENTATION * tensors),
            f"1 GiB + {FRAGMENTATION:.0%} of the above",
        )
    )
    return lines


def has_reference_pass(cfg: PreferenceSettings) -> bool:
    """DPO and IPO score every pair with a reference model too (ORPO has none)."""
    return cfg.rl in ("dpo", "ipo")


def _reference_lines(cfg: FtConfig, arch: Architecture, weights: list[MemoryLine]) -> list[MemoryLine]:
    """A reference that is not the adapter switched off: a second model (ref_model, or the base
    for a full fine-tune that does not precompute), or trl's frozen copy of a continued adapter."""
    if not has_reference_pass(cfg):
        return []
    if cfg.ref_model or (cfg.adapter is None and not cfg.precompute_ref_log_probs):
        copied = sum(
            line.bytes for line in weights if line.key in ("weights", "weights_quantized", "weights_kept")
        )
        what = (
            f"ref_model {cfg.ref_model}, assumed the base's size" if cfg.ref_model else "a copy of the base"
        )
        return [MemoryLine("reference", "reference model weights", copied, what)]
    if cfg.adapter is not None and cfg.lora_model_dir:
        return [
            MemoryLine(
                "reference",
                "reference adapter (frozen copy of lora_model_dir's, float32)",
                4 * arch.lora_params,
                "the base with this adapter is the reference; no second model",
            )
        ]
    return []


def _adapter_line(cfg: AdapterSettings, arch: Architecture, saved_width: int) -> MemoryLine:
    if is_soft_prompt(cfg.adapter):
        return MemoryLine(
            "adapter",
            f"{cfg.adapter} soft prompt ({cfg.num_virtual_tokens} virtual tokens, float32)",
            4 * arch.lora_params,
            f"{cfg.num_virtual_tokens} x {arch.hidden_size} parameters",
        )
    note = f"{arch.lora_params:,} parameters on {len(arch.lora_inputs)} layers"
    if arch.saved_modules:
        note += f"; modules_to_save {arch.saved_module_params:,} x {saved_width} bytes"
    return MemoryLine(
        "adapter",
        f"{cfg.adapter} adapter weights (r={cfg.lora_r}, float32)",
        4 * arch.lora_params + saved_width * arch.saved_module_params,
        note,
    )


def _training_state_lines(cfg: TrainingSettings, groups: list[tuple[list[Shape], int]]) -> list[MemoryLine]:
    """Gradients and optimizer states of the trainable tensors, grouped by their bytes per value."""
    gradients = sum(width * sum(t.numel for t in tensors) for tensors, width in groups)
    how = " + ".join(
        f"{sum(t.numel for t in tensors):,} x {width} bytes" for tensors, width in groups if tensors
    )
    states = sum(optimizer_state_bytes(cfg.optimizer, tensors, width) for tensors, width in groups)
    paged = "paged: may spill to CPU memory under pressure" if cfg.optimizer.startswith("paged") else ""
    return [
        MemoryLine("gradients", "gradients", gradients, how),
        MemoryLine("optimizer", f"optimizer states ({cfg.optimizer})", states, paged),
    ]


def _autocast_copy_lines(
    cfg: AdapterSettings, arch: Architecture, precision: Precision, bits: int | None, width: int
) -> list[MemoryLine]:
    """Under 16-bit autocast, every float32 weight a matmul uses is cast to a 16-bit copy that
    autocast's cache holds to the end of the forward (and autograd, without checkpointing, to the
    backward): all matmul weights of an fp16 full fine-tune (float32 master
    weights), the head upcast by prepare_model_for_kbit_training, and the float32 adapter."""
    if precision.compute_dtype == "float32":
        return []
    if cfg.adapter is None:
        copied = arch.matmul_params if width == 4 else 0
    else:
        # A soft prompt is concatenated with the embeddings, not multiplied: autocast copies none of it.
        adapter_matmul = 0 if is_soft_prompt(cfg.adapter) else arch.lora_params
        copied = adapter_matmul + (arch.head_matmul_params if bits and width < 4 else 0)
    if not copied:
        return []
    return [
        MemoryLine(
            "autocast_copies",
            f"{precision.compute_dtype} copies of float32 weights (autocast)",
            2 * copied,
            f"{copied:,} x 2 bytes, held to the end of the forward",
        )
    ]


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
    cfg: FtConfig,
    arch: Architecture,
    precision: Precision,
    bits: int | None,
    width: int,
    longest: int | None,
) -> list[MemoryLine]:
    """For a micro-batch of full-length rows: sequence_len, or the longest counted row, since a
    batch is padded only to its longest row (packed and pad_to_sequence_len batches are full)."""
    full = cfg.sample_packing or cfg.pad_to_sequence_len or longest is None
    length = cfg.sequence_len if full else min(longest or 0, cfg.sequence_len)
    # A preference batch holds both sequences (chosen, rejected) of each pair.
    sequences = 2 if cfg.rl else 1
    # A soft prompt's virtual tokens go through every layer and the head like text tokens.
    length += cfg.num_virtual_tokens if is_soft_prompt(cfg.adapter) else 0
    tokens = cfg.micro_batch_size * sequences * length
    kbit_adapter = bool(bits) and cfg.adapter is not None
    widths = activation_widths(DTYPE_BYTES[precision.compute_dtype], width, kbit_adapter)
    rank = cfg.lora_r if cfg.adapter else 0
    dropout = cfg.lora_dropout > 0
    dora = cfg.peft_use_dora
    acts = activation_bytes(arch, tokens, widths, cfg.gradient_checkpointing, dropout, rank, dora)
    other = activation_bytes(arch, tokens, widths, not cfg.gradient_checkpointing, dropout, rank, dora)
    state = "on" if cfg.gradient_checkpointing else "off"
    return [
        MemoryLine(
            "activations",
            f"activations (gradient checkpointing {state})",
            acts.layers,
            f"{cfg.micro_batch_size}{' pairs x 2' if cfg.rl else ''} x {length} tokens; "
            f"{'off' if state == 'on' else 'on'}: "
            f"{other.layers / GIB:.2f} GiB",
        ),
        MemoryLine(
            "logits", "logits and loss", acts.logits, f"{tokens:,} tokens x vocab {arch.vocab_size:,}"
        ),
    ]


def _assumptions(cfg: FtConfig, mfu: float, compute_dtype: str, bits: int | None) -> list[str]:
    notes = []
    if cfg.rl:
        reference = (
            "; the reference's forward (no gradients, its activations not kept) adds 2 N FLOPs per token"
            if has_reference_pass(cfg)
            else ""
        )
        notes.append(
            f"rl: {cfg.rl}: each pair is two sequences (chosen, rejected) in one batch{reference}; "
            "trl's DPO trainer computes log-probabilities in chunks, so the logits line is an upper bound"
        )
    if compute_dtype == "float32":
        notes.append(
            "compute is float32 (bf16/fp16 off): tensor cores run far below their 16-bit peak, "
            "so the times are too short"
        )
    if bits == 8:
        notes.append("8-bit: the input bitsandbytes keeps for each int8 layer's backward is not counted")
    return [
        *notes,
        f"activations for a micro-batch of micro_batch_size {cfg.micro_batch_size} rows of the longest "
        "length (sequence_len, or the longest counted row), fused attention (SDPA/flash), one GPU; "
        "with a padding mask, SDPA may keep k and v expanded to every head (grouped-query models)",
        f"CUDA context 1 GiB; fragmentation {FRAGMENTATION:.0%} of the tensors",
        f"time: {mfu:.0%} of each GPU's dense 16-bit tensor peak (MFU); attention's seq x seq work "
        "and 4-bit dequantization not counted",
    ]
