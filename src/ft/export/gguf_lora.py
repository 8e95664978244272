"""A run's LoRA adapter alone as a GGUF adapter, for llama.cpp's `--lora` on a GGUF of the base.

As llama.cpp's `convert_lora_to_gguf.py` writes it: `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and for each adapted weight `NAME.lora_a` (rank x in) and `NAME.lora_b`
(out x rank) under llama.cpp's tensor name. llama.cpp scales the product by alpha / rank; rsLoRA
scales by alpha / sqrt(rank), so its alpha is written as alpha * sqrt(rank). The q/k row
permutation of the Llama family applies to B's rows (the rows of B A). DoRA magnitudes, adapted
embeddings and `lora_modules_to_save` have no place in a llama.cpp LoRA file: such runs are refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gguf

from ft.base.errors import FtError
from ft.export.gguf_arch import GgufArch, HParams, gguf_tensor_name, row_transform, tensor_name_map
from ft.export.gguf_write import GgufType, TensorPlan, check_dtype, tensor_type, write_planned
from ft.export.merge_stream import read_header

PEFT_PREFIX = "base_model.model."
LORA_PARTS = {".lora_A.weight": ".lora_a", ".lora_B.weight": ".lora_b"}


def adapter_alpha(adapter_config: dict[str, Any]) -> float:
    alpha = float(adapter_config["lora_alpha"])
    if adapter_config.get("use_rslora"):
        return alpha * math.sqrt(float(adapter_config["r"]))
    return alpha


def read_adapter_config(run_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora"):
        raise FtError(
            f"{run_dir}: a DoRA adapter has no llama.cpp LoRA form", hint="export the merged model instead"
        )
    if config.get("modules_to_save"):
        raise FtError(
            f"{run_dir}: the adapter trains whole modules too ({config['modules_to_save']}), which a llama.cpp "
            "LoRA file cannot hold",
            hint="export the merged model instead (ft export RUN_DIR --gguf f16)",
        )
    if config.get("fan_in_fan_out"):
        raise FtError(
            f"{run_dir}: GPT-2 style (fan_in_fan_out) adapters are not exported alone",
            hint="export the merged model",
        )
    return config


def plan_lora(run_dir: Path, recipe: GgufArch, hparams: HParams, kind: GgufType) -> list[TensorPlan]:
    names = tensor_name_map(recipe, hparams)
    plans = []
    for stored in read_header(run_dir / "adapter_model.safetensors"):
        source, shape = stored.name, stored.shape
        check_dtype(stored)
        part = next((suffix for suffix in LORA_PARTS if source.endswith(suffix)), None)
        if part is None or not source.startswith(PEFT_PREFIX):
            raise FtError(
                f"{run_dir}: adapter tensor {source!r} is not a LoRA A/B matrix",
                hint="export the merged model",
            )
        weight = source[len(PEFT_PREFIX) : -len(part)] + ".weight"
        name = gguf_tensor_name(names, weight, str(run_dir)) + LORA_PARTS[part]
        transform = row_transform(recipe, hparams, weight) if part == ".lora_B.weight" else None
        plans.append(TensorPlan(stored, name, shape, tensor_type(kind, name, shape), transform))
    return plans


def write_lora(
    run_dir: Path, out: Path, recipe: GgufArch, hparams: HParams, kind: GgufType, name: str
) -> tuple[list[TensorPlan], float]:
    """The adapter file at `out`; returns the tensors written and the alpha llama.cpp will use."""
    config = read_adapter_config(run_dir)
    alpha = adapter_alpha(config)
    plans = plan_lora(run_dir, recipe, hparams, kind)

    def metadata(writer: gguf.GGUFWriter) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_name(name)
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)

    write_planned(out, recipe.arch_name, metadata, plans)
    return plans, alpha
