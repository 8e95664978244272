"""The streaming merge: fold a LoRA adapter into the base weights tensor by tensor.

For models larger than memory. Base tensors are read one at a time with plain file reads (no
mmap, whose touched pages would count towards the resident set until the shard is closed),
merged in float32 as peft does (W' = W + scale * B @ A, transposed for fan_in_fan_out) and
written straight into pre-laid-out output shards, so the peak is the adapter plus a few copies of
the largest tensor.

The safetensors format is small enough to read and write here: an 8-byte little-endian header
length, a JSON header (dtype, shape, [begin, end) byte offsets per tensor), then the raw data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ft.base.errors import FtError

if TYPE_CHECKING:
    import torch

ADAPTER_PREFIX = "base_model.model."
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
STREAMING_HINT = "merge with --in-memory instead (peft folds every adapter kind it knows)"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str | int) -> int:
    """'5GB' -> 5_000_000_000 (decimal units as transformers reads them; KiB/MiB/GiB binary)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match or (match.group(2) or "").upper() not in _UNITS:
        raise FtError(f"--max-shard-size: {text!r} is not a size", hint="write it like 5GB, 500MB or 2GiB")
    size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if size <= 0:
        raise FtError(f"--max-shard-size: {text!r} must be positive")
    return size


# ---------------------------------------------------------------------------------------------
# safetensors files


def _dtype_codes() -> dict[str, torch.dtype]:
    import torch

    return {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
        "F8_E4M3": torch.float8_e4m3fn,
        "F8_E5M2": torch.float8_e5m2,
    }


def dtype_code(dtype: torch.dtype) -> str:
    return {v: k for k, v in _dtype_codes().items()}[dtype]


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor lies in a safetensors file."""

    file: Path
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    """Absolute byte offset in the file."""
    nbytes: int


def read_header(path: Path) -> list[StoredTensor]:
    """The tensors of one safetensors file, in the order of their data."""
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    data_start = 8 + size
    tensors = [
        StoredTensor(
            path,
            name,
            meta["dtype"],
            tuple(meta["shape"]),
            data_start + meta["data_offsets"][0],
            meta["data_offsets"][1] - meta["data_offsets"][0],
        )
        for name, meta in header.items()
        if name != "__metadata__"
    ]
    return sorted(tensors, key=lambda t: t.begin)


def base_shards(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (one file, or the shards its index names)."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    raise FtError(
        f"{folder} has no safetensors weights ({SINGLE_FILE} or {INDEX_FILE}): cannot stream them",
        hint=STREAMING_HINT,
    )


class Scratch:
    """Buffers reused from tensor to tensor. A fresh large allocation is a new mmap that glibc
    returns to the system when freed, so every tensor would page-fault its memory in again."""

    def __init__(self) -> None:
        self.buffers: dict[str, Any] = {}

    def take(self, slot: str, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        import torch

        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self.buffers.get(slot)
        if buffer is None or buffer.numel() < nbytes:
            buffer = self.buffers[slot] = torch.empty(nbytes, dtype=torch.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)


def read_tensor(handle: BufferedReader, stored: StoredTensor, scratch: Scratch) -> torch.Tensor:
    """The tensor's data, in a scratch buffer that the next read reuses."""
    import torch

    tensor = scratch.take("read", _dtype_codes()[stored.dtype], stored.shape)
    handle.seek(stored.begin)
    if handle.readinto(tensor.reshape(-1).view(torch.uint8).numpy().data) != stored.nbytes:
        raise FtError(f"{stored.file}: truncated tensor {stored.name}")
    return tensor


def write_tensor(handle: IO[bytes], tensor: torch.Tensor) -> None:
    import torch

    handle.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)


def safetensors_header(entries: list[tuple[str, str, tuple[int, ...], int]]) -> bytes:
    """The length-prefixed header for (name, dtype code, shape, nbytes) entries laid out in order."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, code, shape, nbytes in entries:
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the safetensors writer pads it
    return len(text).to_bytes(8, "little") + text


# ---------------------------------------------------------------------------------------------
# The adapter


@dataclass
class LoraPair:
    a: Any = None
    b: Any = None
    embedding: bool = False
    """peft stores an embedding's LoRA as lora_embedding_A/B, and its delta transposed."""


@dataclass
class StreamAdapter:
    """The adapter as base-tensor names: LoRA pairs to fold in, full tensors that replace."""

    scale: float
    fan_in_fan_out: bool
    pairs: dict[str, LoraPair] = field(default_factory=dict)
    replacements: dict[str, Any] = field(default_factory=dict)

    def fold_(self, weight: torch.Tensor, name: str) -> None:
        """weight += scale * B @ A (transposed for fan_in_fan_out and embeddings), weight in float32.

        One fused, in-place addmm: peft computes the same sum as (B @ A) * scale, then adds it.
        """
        pair = self.pairs[name]
        a, b = pair.a.float(), pair.b.float()
        if self.fan_in_fan_out or pair.embedding:
            weight.addmm_(a.T, b.T, alpha=self.scale)
        else:
            weight.addmm_(b, a, alpha=self.scale)


_UNSUPPORTED_FLAGS = {
    "use_dora": "DoRA (its magnitude vector needs the whole weight's column norms)",
    "lora_bias": "lora_bias",
    "layer_replication": "layer_replication",
    "trainable_token_indices": "trainable_token_indices",
    "target_parameters": "target_parameters",
    "rank_pattern": "per-module ranks (rank_pattern)",
    "alpha_pattern": "per-module alphas (alpha_pattern)",
}


def lora_scale(config: dict[str, Any]) -> float:
    """lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023)."""
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def check_streamable(config: dict[str, Any]) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise FtError(f"the adapter is {config.get('peft_type')}, not LoRA", hint=STREAMING_HINT)
    for key, what in _UNSUPPORTED_FLAGS.items():
        if config.get(key):
            raise FtError(f"the streaming merge does not handle {what}", hint=STREAMING_HINT)


def base_name(adapter_key: str) -> tuple[str, str | None]:
    """(base tensor name, LoRA part 'A'/'B'/'embedding_A'/... or None for a full tensor)."""
    name = adapter_key.removeprefix(ADAPTER_PREFIX)
    match = re.fullmatch(r"(.+)\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)(?:\.weight)?", name)
    if match:
        return f"{match.group(1)}.weight", match.group(2)
    # modules_to_save (and resized embeddings) are saved in full under the module's own name.
    return name.replace(".modules_to_save.default", "").replace(".base_layer", ""), None


def load_stream_adapter(adapter_dir: Path) -> StreamAdapter:
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    check_streamable(config)
    adapter = StreamAdapter(lora_scale(config), bool(config.get("fan_in_fan_out")))
    for key, tensor in load_file(adapter_dir / "adapter_model.safetensors").items():
        name, part = base_name(key)
        if part is None:
            adapter.replacements[name] = tensor
        elif part == "magnitude_vector":
            raise FtError("the streaming merge does not handle DoRA", hint=STREAMING_HINT)
        else:
            pair = adapter.pairs.setdefault(name, LoraPair())
            pair.embedding = part.startswith("embedding")
            if part.endswith("A"):
                pair.a = tensor
            else:
                pair.b = tensor
    return adapter


# ---------------------------------------------------------------------------------------------
# The merge


@dataclass(frozen=True)
class OutTensor:
    source: StoredTensor
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class StreamResult:
    shards: list[Path]
    total_bytes: int
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    """(base shape, merged shape) of tensors the adapter resized (embeddings grown for new tokens)."""


def plan_outputs(sources: list[StoredTensor], adapter: StreamAdapter, target: torch.dtype) -> list[OutTensor]:
    """Each output tensor's dtype, shape and size, known before any data is read."""
    codes = _dtype_codes()
    out_code = dtype_code(target)
    element = target.itemsize
    planned = []
    for source in sources:
        floating = codes[source.dtype].is_floating_point
        replacement = adapter.replacements.get(source.name)
        shape = tuple(replacement.shape) if replacement is not None else source.shape
        if floating:
            planned.append(OutTensor(source, out_code, shape, math.prod(shape) * element))
        else:
            planned.append(OutTensor(source, source.dtype, shape, source.nbytes))
    return planned


def split_shards(planned: list[OutTensor], max_shard_bytes: int) -> list[list[OutTensor]]:
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for item in planned:
        if shards[-1] and size + item.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.nbytes
    return shards


def check_adapter_matches(adapter: StreamAdapter, names: set[str]) -> None:
    unknown = sorted((set(adapter.pairs) | set(adapter.replacements)) - names)
    if unknown:
        raise FtError(
            f"the adapter changes {unknown[:3]}{' ...' if len(unknown) > 3 else ''}, "
            "which the base model's safetensors files do not hold under that name",
            hint=STREAMING_HINT,
        )
    half = sorted(name for name, pair in adapter.pairs.items() if pair.a is None or pair.b is None)
    if half:
        raise FtError(f"adapter_model.safetensors: LoRA A or B missing for {half[:3]}")


def merged_tensor(
    handle: BufferedReader, item: OutTensor, adapter: StreamAdapter, target: torch.dtype, scratch: Scratch
) -> torch.Tensor:
    """The output tensor, valid until the next call (it may live in a scratch buffer)."""
    import torch

    name = item.source.name
    replacement = adapter.replacements.get(name)
    tensor = replacement if replacement is not None else read_tensor(handle, item.source, scratch)
    if not tensor.is_floating_point():
        return tensor
    if name not in adapter.pairs:
        return converted(tensor, target, scratch)
    # As peft: the base weight rounded to the target dtype, the delta added in float32, rounded once.
    weight = scratch.take("fold", torch.float32, tuple(tensor.shape))
    weight.copy_(tensor if tensor.dtype == target or target == torch.float32 else tensor.to(target))
    adapter.fold_(weight, name)
    return converted(weight, target, scratch)


def converted(tensor: torch.Tensor, target: torch.dtype, scratch: Scratch) -> torch.Tensor:
    if tensor.dtype == target:
        return tensor
    out = scratch.take("out", target, tuple(tensor.shape))
    out.copy_(tensor)
    return out


def shard_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def iter_handles(items: list[OutTensor]) -> Iterator[tuple[BufferedReader, OutTensor]]:
    """Each item with an open handle on its base file (opened once per run of items from it)."""
    handle: BufferedReader | None = None
    current: Path | None = None
    try:
        for item in items:
            if item.source.file != current:
                if handle is not None:
                    handle.close()
                current = item.source.file
                handle = current.open("rb")
            assert handle is not None
            yield handle, item
    finally:
        if handle is not None:
            handle.close()


def write_shard(
    path: Path, items: list[OutTensor], adapter: StreamAdapter, target: torch.dtype, scratch: Scratch
) -> None:
    entries = [(i.source.name, i.dtype, i.shape, i.nbytes) for i in items]
    with path.open("wb") as out:
        out.write(safetensors_header(entries))
        for handle, item in iter_handles(items):
            tensor = merged_tensor(handle, item, adapter, target, scratch)
            if tensor.numel() * tensor.element_size() != item.nbytes:
                raise FtError(f"{item.source.name}: merged size differs from the planned layout")
            write_tensor(out, tensor)


def write_index(folder: Path, shards: list[list[OutTensor]], names: list[str]) -> None:
    weight_map = {item.source.name: name for name, items in zip(names, shards, strict=True) for item in items}
    total = sum(item.nbytes for items in shards for item in items)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread while streaming: the work is copies, adds and rank-r products, bound by
    memory; with other processes on the cores, OpenMP's waits between threads cost more than the
    second thread gains (an add of 1M floats: 0.07 ms on one thread, 11 ms on two, 2-core CPU
    at load 4.5)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stream_merge(
    base_dir: Path, adapter_dir: Path, out_dir: Path, target: torch.dtype, max_shard_bytes: int
) -> StreamResult:
    """Write the merged weights of `base_dir` + the adapter in `adapter_dir` as shards in `out_dir`."""
    adapter = load_stream_adapter(adapter_dir)
    sources = [tensor for shard in base_shards(base_dir) for tensor in read_header(shard)]
    check_adapter_matches(adapter, {t.name for t in sources})
    shards = split_shards(plan_outputs(sources, adapter, target), max_shard_bytes)
    names = shard_names(len(shards))
    scratch = Scratch()
    with single_thread():
        for name, items in zip(names, shards, strict=True):
            write_shard(out_dir / name, items, adapter, target, scratch)
    if len(shards) > 1:
        write_index(out_dir, shards, names)
    base_shapes = {t.name: t.shape for t in sources}
    resized = {
        name: (base_shapes[name], tuple(tensor.shape))
        for name, tensor in adapter.replacements.items()
        if tuple(tensor.shape) != base_shapes[name]
    }
    total = sum(item.nbytes for items in shards for item in items)
    return StreamResult([out_dir / name for name in names], total, resized)
