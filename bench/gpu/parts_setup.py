"""Part `setup`: the machine and library versions, then the models and data the other parts use."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from typing import TYPE_CHECKING

from fixtures import alpaca_rows, big_model, long_rows, tiny_model

if TYPE_CHECKING:
    from worker import Part

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "bitsandbytes",
    "datasets",
    "pydantic",
    "safetensors",
    "tokenizers",
    "huggingface_hub",
    "liger_kernel",
    "deepspeed",
    "triton",
)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def setup(part: Part) -> None:
    import torch

    part.info("python", sys.version.split()[0])
    part.info("platform", platform.platform())
    part.info("libraries", versions())
    cuda = torch.cuda.is_available()
    part.info("cuda", torch.version.cuda if cuda else None)
    if cuda:
        props = torch.cuda.get_device_properties(0)
        part.info("gpu", props.name)
        part.info("gpu_memory_gib", round(props.total_memory / 2**30, 1))
        part.info("compute_capability", f"{props.major}.{props.minor}")
        part.info("bf16_supported", torch.cuda.is_bf16_supported())
        check_bitsandbytes_cuda(part)
    elif not part.tiny:
        raise RuntimeError("no CUDA device: run with --tiny on a CPU")
    for name in ("ft", "trl", "peft", "bitsandbytes", "datasets", "pydantic"):
        importlib.import_module(name)  # a missing wheel fails here, by name, before any part needs it
    tiny_model(part.work)
    big = big_model(part.work, part.tiny)
    part.info("big_model", str(big))
    alpaca_rows(part.work, 64 if part.tiny else 1024)
    long_rows(part.work, 64, 400 if part.tiny else 3000)


def check_bitsandbytes_cuda(part: Part) -> None:
    """NF4 round trip on the GPU: bitsandbytes' CUDA library loads and quantizes."""
    import bitsandbytes.functional as bnb
    import torch

    weight = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
    packed, state = bnb.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
    error = float((bnb.dequantize_4bit(packed, state) - weight).abs().mean() / weight.abs().mean())
    # NF4's mean relative error on Gaussian weights is about 0.1 (Dettmers et al. 2023).
    part.measure("NF4 round trip on the GPU (mean relative error)", round(error, 4), "", "< 0.2", error < 0.2)
