"""Parts that train: precision, ft plan against measured memory, throughput (ft against the trl
notebook of bench/train.py, packing, MFU), and liger's kernels on and off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fixtures import alpaca_rows, big_model, long_rows, run_config, tiny_model
from measure import (
    GIB,
    MemorySampler,
    gpu_name,
    has_cuda,
    losses,
    peak_tflops,
    relative_error,
    run_info,
    train,
)

if TYPE_CHECKING:
    from worker import Part

LIGER_KEYS = ("liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_fused_linear_cross_entropy")


# ---------------------------------------------------------------------------------------------
# 3. Precision


def precision(part: Part) -> None:
    """`bf16: auto` on this machine: the dtype ft resolves, the dtype every Linear layer computes in
    during training (seen by a forward hook on all modules), and a falling loss; LoRA and QLoRA."""
    expected = "bfloat16" if has_cuda() else "float32"
    data = alpaca_rows(part.work, 64 if part.tiny else 1024)
    for adapter, keys in (("lora", {}), ("qlora", {"load_in_4bit": True})):
        config = run_config(
            part.work,
            f"precision-{adapter}",
            tiny_model(part.work),
            data,
            adapter=adapter,
            bf16="auto",
            max_steps=4 if part.tiny else 10,
            learning_rate=1e-2,
            **keys,
        )
        with linear_compute_dtypes() as seen:
            result = train(config)
        info = run_info(result.run_dir)
        part.measure(
            f"{adapter}: bf16: auto resolves to", info["dtype"], "", expected, info["dtype"] == expected
        )
        if adapter == "qlora":
            compute = info["quantization"]["compute_dtype"]
            part.measure("qlora: 4-bit compute dtype", compute, "", expected, compute == expected)
        dtypes = sorted(seen)
        part.measure(
            f"{adapter}: Linear layers compute in (training)",
            dtypes,
            "",
            f"{expected} only",
            dtypes == [expected],
        )
        curve = losses(result.run_dir)
        part.measure(
            f"{adapter}: loss first -> last",
            [round(curve[0], 4), round(curve[-1], 4)],
            "",
            "falls",
            curve[-1] < curve[0],
        )


class linear_compute_dtypes:
    """Context manager: the dtypes every torch.nn.Linear computes in while it is open. For a plain
    Linear that is its output's dtype (autocast decides it); bitsandbytes' 4-bit layers cast their
    input to their compute_dtype and their output back to the input's dtype (float32 in k-bit
    training, whose residual stream peft keeps in float32), so theirs is their compute_dtype."""

    def __enter__(self) -> set[str]:
        import torch

        self.seen: set[str] = set()

        def hook(module: Any, inputs: Any, output: Any) -> None:
            if isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
                dtype = getattr(module, "compute_dtype", None) or output.dtype
                self.seen.add(str(dtype).removeprefix("torch."))

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


# ---------------------------------------------------------------------------------------------
# 1. ft plan against reality


PLAN_GROUPS = {
    "weights and adapter (loaded)": (
        "weights",
        "weights_quantized",
        "weights_kept",
        "weights_upcast",
        "adapter",
    ),
    "optimizer states (after step 1)": ("optimizer",),
    "gradients, copies, activations, logits (peak - after step 1)": (
        "gradients",
        "autocast_copies",
        "activations",
        "logits",
    ),
}


def plan_runs(tiny: bool) -> list[tuple[str, dict[str, Any]]]:
    qlora = {"adapter": "qlora", "load_in_4bit": True, "bnb_4bit_use_double_quant": True}
    if tiny:
        return [
            ("qlora-gc-128", {**qlora, "gradient_checkpointing": True, "sequence_len": 128, "max_steps": 3})
        ]
    runs = [
        (
            f"qlora-gc{'on' if gc else 'off'}-{length}",
            {**qlora, "gradient_checkpointing": gc, "sequence_len": length},
        )
        for length in (512, 2048)
        for gc in (True, False)
    ]
    return [
        *runs,
        ("lora-bf16-gcoff-1024", {"adapter": "lora", "gradient_checkpointing": False, "sequence_len": 1024}),
    ]


def plan_vs_reality(part: Part) -> None:
    """Peak torch.cuda.max_memory_allocated of 20-step runs against ft plan's total without its stated
    overhead line (CUDA context and fragmentation are not allocations); groups of lines against the
    memory at the points of the run where they are held."""
    from ft.config.load import read_config
    from ft.plan.estimate import build_plan

    model = big_model(part.work, part.tiny)
    data = long_rows(part.work, 64, 400 if part.tiny else 3000)
    for name, keys in plan_runs(part.tiny):
        config = run_config(part.work, f"plan-{name}", model, data, excess_length_strategy="truncate", **keys)
        cfg, _ = read_config(config)
        lines = {line.key: line.bytes for line in build_plan(cfg).memory}
        planned = sum(size for key, size in lines.items() if key != "overhead")
        sampler = MemorySampler().start()
        train(config, on_event=sampler)
        if not has_cuda():
            part.measure(
                f"{name}: plan without overhead",
                round(planned / GIB, 4),
                "GiB",
                "within 10% of the peak",
                None,
                "no CUDA: nothing to measure against",
            )
            continue
        peak = sampler.peak()
        error = relative_error(planned, peak)
        part.measure(
            f"{name}: plan {planned / GIB:.2f} GiB vs peak allocated",
            round(peak / GIB, 3),
            "GiB",
            "|error| <= 10%",
            error is not None and abs(error) <= 0.10,
            f"error {error:+.1%}" if error is not None else "",
        )
        for label, measured in group_measurements(sampler, peak).items():
            planned_group = sum(lines.get(key, 0) for key in PLAN_GROUPS[label])
            group_error = relative_error(planned_group, measured) if measured is not None else None
            part.measure(
                f"{name}: {label}",
                round((measured or 0) / GIB, 3),
                "GiB",
                "(reported)",
                None,
                f"plan {planned_group / GIB:.3f} GiB"
                + (f", error {group_error:+.1%}" if group_error is not None else ""),
            )


def group_measurements(sampler: MemorySampler, peak: int) -> dict[str, int | None]:
    loaded, stepped = sampler.loaded, sampler.after_first_step
    return {
        "weights and adapter (loaded)": loaded,
        "optimizer states (after step 1)": stepped - loaded
        if stepped is not None and loaded is not None
        else None,
        "gradients, copies, activations, logits (peak - after step 1)": peak - stepped
        if stepped is not None
        else None,
    }


# ---------------------------------------------------------------------------------------------
# 2. Throughput


def throughput(part: Part) -> None:
    """bench/train.py's three runs on the big model: the trl notebook, ft, ft with packing (sdpa)."""
    from ft.plan.architecture import inspect_model
    from ft.plan.memory import training_flops
    from train import alpaca_like_rows, ft_config, ft_run, trl_notebook_run

    count, batch = (16, 8) if part.tiny else (1024, 8)
    model = big_model(part.work, part.tiny)
    data = alpaca_rows(part.work, count)
    runs = part.work / "runs"
    speed = {}
    seconds, tokens = trl_notebook_run(
        model, alpaca_like_rows(count), runs / "throughput-trl", batch, on_gpu=has_cuda()
    )
    speed["trl notebook"] = tokens / seconds
    for name, packing in (("ft", False), ("ft packed", True)):
        seconds, tokens = ft_run(
            model,
            data,
            runs / f"throughput-{name.replace(' ', '-')}",
            batch,
            packing,
            attn_implementation="sdpa",
        )
        speed[name] = tokens / seconds
    for name, value in speed.items():
        part.measure(f"{name}: real tokens/s", round(value), "tokens/s", "(reported)", None)
    ratio = speed["ft"] / speed["trl notebook"]
    part.measure("ft / trl notebook", round(ratio, 3), "x", ">= 0.95", ratio >= 0.95, timing=True)
    packed = speed["ft packed"] / speed["ft"]
    part.measure("packing / no packing (sdpa)", round(packed, 3), "x", ">= 1.5", packed >= 1.5, timing=True)
    cfg = ft_config(model, data, runs / "unused", batch, False)
    per_token = training_flops(inspect_model(cfg, None), 1, full_finetune=False, checkpointing=False)
    peak = peak_tflops(gpu_name())
    for name in ("ft", "ft packed"):
        if peak is None:
            part.measure(f"{name}: MFU", None, "", "(reported)", None, "no GPU peak known for this device")
            continue
        mfu = speed[name] * per_token / (peak * 1e12)
        part.measure(
            f"{name}: MFU",
            round(mfu, 4),
            "",
            "(reported)",
            None,
            f"{per_token / 1e9:.2f} GFLOP per token (ft plan's 4 N for LoRA) / {peak:g} TFLOP/s bf16 peak",
        )


# ---------------------------------------------------------------------------------------------
# 2b. Liger kernels


def liger(part: Part) -> None:
    """axolotl's liger keys given with --set, against the same run without them."""
    import importlib.util

    from ft.base.errors import FtError

    part.info("liger_kernel installed", importlib.util.find_spec("liger_kernel") is not None)
    model = big_model(part.work, part.tiny)
    data = alpaca_rows(part.work, 64 if part.tiny else 1024)
    config = run_config(
        part.work,
        "liger",
        model,
        data,
        sequence_len=512,
        micro_batch_size=8,
        max_steps=5 if part.tiny else 40,
    )
    overrides = [f"{key}=true" for key in LIGER_KEYS]
    results = {}
    for name, sets in (("without", []), ("with liger keys", overrides)):
        sampler = MemorySampler().start()
        try:
            result = train(config, sets)
        except FtError as err:
            part.measure(
                "liger keys accepted by ft",
                False,
                "",
                "accepted (mapped to trl's use_liger_kernel)",
                False,
                " ".join(err.message.split())[:400],
            )
            return
        results[name] = (result.tokens_per_s, sampler.peak())
        part.measure(
            f"{name}: real tokens/s", round(result.tokens_per_s or 0), "tokens/s", "(reported)", None
        )
        if has_cuda():
            part.measure(f"{name}: peak allocated", round(sampler.peak() / GIB, 3), "GiB", "(reported)", None)
        if sets:
            said = [note for note in result.notes if "liger" in note.lower()]
            part.measure("liger keys accepted by ft", True, "", "accepted", True, " | ".join(said))
    (base_speed, base_peak), (liger_speed, liger_peak) = results["without"], results["with liger keys"]
    if base_speed and liger_speed:
        part.measure(
            "liger / without: tokens/s",
            round(liger_speed / base_speed, 3),
            "x",
            "> 1 (Liger reports ~1.2)",
            liger_speed > base_speed,
            timing=True,
        )
    if has_cuda() and base_peak:
        part.measure(
            "liger / without: peak memory",
            round(liger_peak / base_peak, 3),
            "x",
            "< 1",
            liger_peak < base_peak,
        )
