"""Write a merged model folder as one GGUF file, tensor by tensor.

The header, the metadata and the table of tensors (names, shapes, types, offsets) are known from
the safetensors headers alone, so they are written first with `gguf.GGUFWriter`; then each tensor
is read from its shard in slices of rows, converted (q/k permutation, transposition), quantized
and appended. Memory stays near one tensor's slice, never the model.

Tensor types follow llama.cpp's converter: 1-D tensors and norms stay float32; the rest take the
chosen type, falling back to f16 where a row is not a whole number of quantization blocks. For the
4- and 5-bit types the token embeddings and the output head are written in q8_0, as llama.cpp's
quantizer keeps them at higher precision (SmolLM2's shipped Q4_1 file does the same).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gguf
import numpy as np

from ft.base.errors import FtError
from ft.export.gguf_arch import (
    SKIPPED_SUFFIXES,
    GgufArch,
    HParams,
    gguf_tensor_name,
    llama3_rope_factors,
    output_shape,
    row_transform,
    tensor_name_map,
    write_hparams,
)
from ft.export.gguf_vocab import Vocab, write_vocab
from ft.export.merge_stream import StoredTensor

Q = gguf.GGMLQuantizationType
F = gguf.LlamaFileType


@dataclass(frozen=True)
class GgufType:
    name: str
    file_type: gguf.LlamaFileType
    tensor_type: gguf.GGMLQuantizationType
    embeddings: gguf.GGMLQuantizationType
    """Type of the token embeddings and the output head."""


NUMPY_TYPES = {
    t.name: t
    for t in (
        GgufType("f32", F.ALL_F32, Q.F32, Q.F32),
        GgufType("f16", F.MOSTLY_F16, Q.F16, Q.F16),
        GgufType("bf16", F.MOSTLY_BF16, Q.BF16, Q.BF16),
        GgufType("q8_0", F.MOSTLY_Q8_0, Q.Q8_0, Q.Q8_0),
        GgufType("q5_1", F.MOSTLY_Q5_1, Q.Q5_1, Q.Q8_0),
        GgufType("q5_0", F.MOSTLY_Q5_0, Q.Q5_0, Q.Q8_0),
        GgufType("q4_1", F.MOSTLY_Q4_1, Q.Q4_1, Q.Q8_0),
        GgufType("q4_0", F.MOSTLY_Q4_0, Q.Q4_0, Q.Q8_0),
    )
}
"""The types the `gguf` package quantizes in numpy."""

K_QUANTS = {
    "q2_k": F.MOSTLY_Q2_K,
    "q3_k_s": F.MOSTLY_Q3_K_S,
    "q3_k_m": F.MOSTLY_Q3_K_M,
    "q3_k_l": F.MOSTLY_Q3_K_L,
    "q4_k_s": F.MOSTLY_Q4_K_S,
    "q4_k_m": F.MOSTLY_Q4_K_M,
    "q5_k_s": F.MOSTLY_Q5_K_S,
    "q5_k_m": F.MOSTLY_Q5_K_M,
    "q6_k": F.MOSTLY_Q6_K,
}
"""Types only llama.cpp's own quantizer makes (from an f16 file)."""

ROW_SLICE_BYTES = 32 * 2**20
"""Rows are read and converted in slices of about this many float32 bytes."""


@dataclass(frozen=True)
class TensorPlan:
    stored: StoredTensor | None
    """Where the tensor lies in its safetensors file (None for a tensor ft computes: rope_freqs)."""
    name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    values: np.ndarray | None = None

    @property
    def source(self) -> str:
        return self.stored.name if self.stored is not None else self.name

    @property
    def nbytes(self) -> int:
        return int(np.prod(gguf.quant_shape_to_byte_shape(self.shape, self.qtype)))


# ---------------------------------------------------------------------------------------------
# The plan: every tensor's name, shape and type, from the safetensors headers


def read_hparams(folder: Path) -> HParams:
    path = folder / "config.json"
    if not path.is_file():
        raise FtError(f"{folder}: no config.json", hint="give a merged model folder or a run folder")
    data: HParams = json.loads(path.read_text(encoding="utf-8"))
    return {**data, **data["text_config"]} if "text_config" in data else data


def safetensors_headers(folder: Path) -> list[StoredTensor]:
    """Every tensor of the model folder's safetensors files, in the files' order."""
    from ft.export.merge_stream import base_shards, read_header

    return [tensor for shard in base_shards(folder) for tensor in read_header(shard)]


def tensor_type(kind: GgufType, name: str, shape: tuple[int, ...]) -> gguf.GGMLQuantizationType:
    if (
        len(shape) <= 1
        or name.endswith("_norm.weight")
        or not name.endswith((".weight", ".lora_a", ".lora_b"))
    ):
        return Q.F32
    wanted = kind.embeddings if name in ("token_embd.weight", "output.weight") else kind.tensor_type
    block_size, _ = gguf.GGML_QUANT_SIZES[wanted]
    return wanted if shape[-1] % block_size == 0 else Q.F16


def plan_tensors(folder: Path, recipe: GgufArch, hparams: HParams, kind: GgufType) -> list[TensorPlan]:
    names = tensor_name_map(recipe, hparams)
    plans: list[TensorPlan] = []
    factors = llama3_rope_factors(hparams)
    if factors is not None:
        plans.append(TensorPlan(None, "rope_freqs.weight", factors.shape, Q.F32, values=factors))
    for stored in safetensors_headers(folder):
        if stored.name.endswith(SKIPPED_SUFFIXES):
            continue
        check_dtype(stored)
        name = gguf_tensor_name(names, stored.name, str(folder))
        shape = output_shape(recipe, stored.name, stored.shape)
        transform = row_transform(recipe, hparams, stored.name)
        plans.append(TensorPlan(stored, name, shape, tensor_type(kind, name, shape), transform))
    return plans


# ---------------------------------------------------------------------------------------------
# Writing


STORED_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}


def check_dtype(stored: StoredTensor) -> None:
    if stored.dtype not in STORED_DTYPES:
        raise FtError(
            f"{stored.file}: tensor {stored.name} is {stored.dtype}; ft exports float32, float16 and bfloat16 weights",
            hint="merge the run again with ft merge (it writes unquantized weights)",
        )


def open_file(files: dict[Path, BinaryIO], path: Path) -> BinaryIO:
    """One open handle per safetensors file."""
    if path not in files:
        files[path] = path.open("rb")
    return files[path]


def read_values(handle: BinaryIO, stored: StoredTensor, offset: int, count: int) -> np.ndarray:
    """`count` values from the `offset`-th on, as float32, with plain file reads: no memory map, so
    the process holds only what it reads now, not every page of the file it has touched."""
    dtype = STORED_DTYPES[stored.dtype]
    handle.seek(stored.begin + offset * dtype.itemsize)
    raw = np.fromfile(handle, dtype=dtype, count=count)
    if stored.dtype == "BF16":  # bfloat16 is the upper half of a float32
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32, copy=False)


def read_tensor(files: dict[Path, BinaryIO], stored: StoredTensor) -> np.ndarray:
    count = stored.nbytes // STORED_DTYPES[stored.dtype].itemsize
    return read_values(open_file(files, stored.file), stored, 0, count).reshape(stored.shape)


def float_rows(files: dict[Path, BinaryIO], plan: TensorPlan) -> Iterator[np.ndarray]:
    """The tensor as float32 rows: whole when it must be transformed or is 1-d, else in slices."""
    if plan.values is not None:
        yield plan.values
        return
    stored = plan.stored
    assert stored is not None
    if plan.transform is not None or len(stored.shape) < 2:
        whole = read_tensor(files, stored)
        yield whole if plan.transform is None else plan.transform(whole)
        return
    row = int(np.prod(stored.shape[1:]))
    step = max(1, ROW_SLICE_BYTES // (4 * row))
    handle = open_file(files, stored.file)
    for start in range(0, stored.shape[0], step):
        rows = min(step, stored.shape[0] - start)
        yield read_values(handle, stored, start * row, rows * row).reshape((rows, *stored.shape[1:]))


def encode(rows: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    values = np.ascontiguousarray(rows, dtype=np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:  # the same rounding, on every core (numpy uses one)
        import torch

        return torch.from_numpy(values).to(torch.float16).numpy()
    return gguf.quants.quantize(values, qtype)


@dataclass(frozen=True)
class Metadata:
    """What the file says about itself beside the weights."""

    name: str
    base_model: str | None
    chat_template: str | None
    adds_bos: bool


def write_planned(
    out: Path,
    arch_name: str,
    write_metadata: Callable[[gguf.GGUFWriter], None],
    plans: list[TensorPlan],
    on_tensor: Callable[[int, int], None] | None = None,
) -> None:
    """Header, metadata and tensor table first, then the tensors one at a time, at `out`."""
    writer = gguf.GGUFWriter(out, arch_name)
    files: dict[Path, BinaryIO] = {}
    try:
        write_metadata(writer)
        for plan in plans:
            writer.add_tensor_info(
                plan.name, plan.shape, np.dtype(np.float32), plan.nbytes, raw_dtype=plan.qtype
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        for index, plan in enumerate(plans):
            writer.write_padding(fout, fout.tell())
            written = 0
            for rows in float_rows(files, plan):
                data = encode(rows, plan.qtype)
                data.tofile(fout)
                written += data.nbytes
            if written != plan.nbytes:
                raise FtError(f"{plan.source}: wrote {written} bytes where {plan.nbytes} were planned")
            writer.write_padding(fout, written)
            if on_tensor is not None:
                on_tensor(index + 1, len(plans))
        fout.flush()
        os.fsync(fout.fileno())
    finally:
        writer.close()
        for handle in files.values():
            handle.close()


def write_model(
    folder: Path,
    out: Path,
    recipe: GgufArch,
    hparams: HParams,
    kind: GgufType,
    vocab: Vocab,
    meta: Metadata,
    on_tensor: Callable[[int, int], None] | None = None,
) -> list[TensorPlan]:
    """A merged model folder as one GGUF file at `out`; returns what was written."""
    plans = plan_tensors(folder, recipe, hparams, kind)

    def metadata(writer: gguf.GGUFWriter) -> None:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(meta.name)
        if meta.base_model:
            writer.add_base_model_count(1)
            writer.add_base_model_name(0, meta.base_model)
        write_hparams(writer, recipe, hparams)
        writer.add_file_type(kind.file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        write_vocab(writer, vocab, folder, meta.adds_bos, meta.chat_template)

    write_planned(out, recipe.arch_name, metadata, plans, on_tensor)
    return plans
