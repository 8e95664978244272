"""Check a written GGUF file against the merged model it came from.

Two checks, every export:
- read back with the `gguf` reader: every tensor is there with its name, shape and type, and its
  dequantized values are the source's within the error its type allows (exact for f32), and the
  metadata holds the tokenizer and chat template that were meant;
- loaded with transformers' own GGUF loader (an independent reader: it undoes the q/k permutation
  itself): the tokenizer it rebuilds encodes the probe texts to the same ids, and the next-token
  logits on a probe batch are compared with the merged model's. f32/f16/bf16 must agree within the
  dtype's tolerance (the one `ft merge` uses); for quantized files the top-1 agreement and the
  largest difference are measured and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gguf
import numpy as np

from ft.base.errors import FtError
from ft.export.gguf_write import TensorPlan, read_tensor

Q = gguf.GGMLQuantizationType
RELATIVE_ERROR = {
    Q.F32: 0.0,
    Q.F16: 1e-3,
    Q.BF16: 6e-3,
    Q.Q8_0: 0.02,
    Q.Q6_K: 0.04,
    Q.Q5_0: 0.08,
    Q.Q5_1: 0.08,
    Q.Q5_K: 0.08,
    Q.Q4_0: 0.2,
    Q.Q4_1: 0.2,
    Q.Q4_K: 0.2,
    Q.Q3_K: 0.35,
    Q.Q2_K: 0.6,
}
"""Largest allowed RMS(error) / RMS(value) of a tensor in each type; about 3x what rounding to the
type gives on normally distributed weights, far below what a misplaced or mis-typed tensor gives."""
FLOAT_TYPES = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class ReadBack:
    tensors: int
    worst_tensor: str
    worst_relative_error: float


@dataclass(frozen=True)
class LogitCheck:
    max_abs_logit_diff: float
    top1_agreement: float
    tolerance: float | None
    positions: int
    tokenizer_ids_equal: bool


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.sqrt(np.mean(np.square(expected, dtype=np.float64))))
    error = float(np.sqrt(np.mean(np.square(actual - expected, dtype=np.float64))))
    return error / scale if scale > 0 else error


def read_back(path: Path, plans: list[TensorPlan], fields: dict[str, Any]) -> ReadBack:
    """Every planned tensor in the file, with its values; the metadata `fields` as written."""
    reader = gguf.GGUFReader(path)
    for key, expected in fields.items():
        field = reader.get_field(key)
        if field is None or field.contents() != expected:
            raise FtError(
                f"{path}: metadata {key} reads back wrong", hint="report this as a bug in ft export"
            )
    stored = {t.name: t for t in reader.tensors}
    if sorted(stored) != sorted(p.name for p in plans):
        raise FtError(f"{path}: the tensors read back are not those written", hint="report this as a bug")
    worst, worst_name = 0.0, ""
    files: dict[Path, BinaryIO] = {}
    try:
        for plan in plans:
            error = _tensor_error(path, plan, stored[plan.name], files)
            if error >= worst:
                worst, worst_name = error, plan.name
    finally:
        for handle in files.values():
            handle.close()
    return ReadBack(len(plans), worst_name, worst)


def _tensor_error(path: Path, plan: TensorPlan, tensor: Any, files: dict[Path, BinaryIO]) -> float:
    """The relative error of one tensor read back; FtError beyond what its type allows."""
    if tensor.tensor_type != plan.qtype or tuple(reversed(tensor.shape.tolist())) != plan.shape:
        raise FtError(f"{path}: {plan.name} reads back as {tensor.tensor_type.name} {tensor.shape.tolist()}")
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(plan.shape)
    if plan.values is not None:
        expected = plan.values
    else:
        assert plan.stored is not None
        expected = read_tensor(files, plan.stored)
        if plan.transform is not None:
            expected = plan.transform(expected)
    error = relative_error(values, expected.reshape(plan.shape))
    allowed = RELATIVE_ERROR.get(plan.qtype, 0.6)
    if not error <= allowed:
        raise FtError(
            f"{path}: {plan.name} ({plan.qtype.name}) differs from the merged weights by "
            f"{error:.3g} relative (allowed {allowed:g})",
            hint="report this as a bug in ft export",
        )
    return error


def compare_logits(
    path: Path, merged: Path, type_name: str, probe_texts: tuple[str, ...], tolerance_for: Any
) -> LogitCheck:
    """Merged model against the GGUF file loaded by transformers, on the probe batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    try:
        gguf_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        ).eval()
    except Exception as err:  # transformers' GGUF loader raises many kinds; all mean "cannot read"
        raise FtError(
            f"{path}: transformers cannot load the exported file ({type(err).__name__}: {err})",
            hint="report this as a bug in ft export (FT_DEBUG=1 shows the traceback)",
        ) from err
    ids_equal = all(tokenizer(text)["input_ids"] == gguf_tokenizer(text)["input_ids"] for text in probe_texts)
    reference = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    rows = [tokenizer(text)["input_ids"] for text in probe_texts]
    expected, actual = [], []
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row])
            expected.append(reference(input_ids=ids).logits[0].float())
            actual.append(gguf_model(input_ids=ids).logits[0].float())
    want, got = torch.cat(expected), torch.cat(actual)
    diff = float((want - got).abs().max())
    agreement = float((want.argmax(-1) == got.argmax(-1)).float().mean())
    tolerance = (
        tolerance_for(_merge_dtype(type_name), float(want.abs().max())) if type_name in FLOAT_TYPES else None
    )
    return LogitCheck(diff, agreement, tolerance, int(want.shape[0]), ids_equal)


def _merge_dtype(type_name: str) -> str:
    return {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[type_name]
