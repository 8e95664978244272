"""Precision and quantization: pure functions from the config and the hardware to the dtype a run
computes in and the bitsandbytes settings it loads with (settings in, settings or library object out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.config.schema import QuantizationSettings, TrainingSettings

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig


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
    cfg: TrainingSettings, *, has_cuda: bool | None = None, bf16_supported: bool | None = None
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


def _cpu_precision(cfg: TrainingSettings) -> Precision:
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


def quantization_bits(cfg: QuantizationSettings) -> int | None:
    if cfg.load_in_4bit:
        return 4
    if cfg.load_in_8bit:
        return 8
    return None


def bnb_compute_dtype(cfg: QuantizationSettings, precision: Precision) -> DtypeName:
    """`bnb_4bit_compute_dtype`, with `auto` following the run's compute dtype."""
    if cfg.bnb_4bit_compute_dtype == "auto":
        return precision.compute_dtype
    return cfg.bnb_4bit_compute_dtype


def bnb_settings(cfg: QuantizationSettings, precision: Precision) -> dict[str, Any]:
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


def build_bnb_config(cfg: QuantizationSettings, precision: Precision) -> BitsAndBytesConfig | None:
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


def quantization_info(cfg: QuantizationSettings, precision: Precision) -> dict[str, Any]:
    """The `quantization` entry of run.json."""
    bits = quantization_bits(cfg)
    return {
        "bits": bits,
        "quant_type": cfg.bnb_4bit_quant_type if bits == 4 else None,
        "double_quant": cfg.bnb_4bit_use_double_quant if bits == 4 else None,
        "compute_dtype": bnb_compute_dtype(cfg, precision) if bits else None,
    }
