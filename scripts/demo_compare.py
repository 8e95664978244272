"""Before/after on held-out rows for the quickstart: base model vs fine-tuned run (vs merged model).

    python scripts/demo_compare.py configs/quickstart.yml                         # base model only
    python scripts/demo_compare.py configs/quickstart.yml --run outputs/quickstart
    python scripts/demo_compare.py configs/quickstart.yml --run outputs/quickstart \
        --merged outputs/quickstart-merged

Greedy decoding, exact match of the whole answer (after stripping whitespace), on the rows of
the config's first test dataset (chat `messages`: the user turn is the prompt, the assistant turn
the expected answer). The base model is loaded as it is trained (4-bit NF4 when the config says so),
so base and tuned differ only by the adapter. Uses the run folder's files (run.json, the adapter,
the tokenizer with its chat template); needs nothing of ft but the GGUF conversion.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def read_config(path: Path) -> Any:
    import yaml

    from ft.config.schema import FtConfig

    return FtConfig.model_validate(yaml.safe_load(path.read_text()))


def base_model_folder(reference: str) -> Path:
    from ft.config.sources import resolve_model_source
    from ft.models.gguf import materialize_gguf

    source = resolve_model_source(reference)
    if source.kind == "gguf":
        return materialize_gguf(Path(source.location))
    return Path(source.location)


def read_rows(path: Path, limit: int) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[:limit]:
        turns = json.loads(line)["messages"]
        rows.append((turns[0]["content"], turns[1]["content"]))
    return rows


def load_model(folder: Path, cfg: Any, quantize: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if not quantize:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=torch.float32,  # the CPU computes in float32
    )
    return AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=bnb, dtype=torch.float32, device_map="cpu"
    ).eval()


def load_tokenizer(folder: Path, pad_token: str | None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"  # generation continues after the prompt's last token
    if pad_token:
        tokenizer.pad_token = pad_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def answer_all(
    model: Any, tokenizer: Any, prompts: list[str], stop_ids: list[int], max_new_tokens: int
) -> list[str]:
    import torch

    answers: list[str] = []
    for start in range(0, len(prompts), 20):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            )
            for p in prompts[start : start + 20]
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row in out:
            answers.append(
                tokenizer.decode(row[batch.input_ids.shape[1] :], skip_special_tokens=True).strip()
            )
    return answers


def score(label: str, answers: list[str], rows: list[tuple[str, str]], seconds: float) -> int:
    correct = sum(answer == expected for answer, (_, expected) in zip(answers, rows, strict=True))
    print(f"  {label:<8} exact match {correct:>3}/{len(rows)}  ({seconds:.0f} s)", flush=True)
    return correct


def run_model(
    label: str,
    model: Any,
    tokenizer: Any,
    rows: list[tuple[str, str]],
    args: argparse.Namespace,
    terminator: str | None = None,
) -> list[str]:
    stop_ids = [tokenizer.eos_token_id]
    if terminator and terminator in tokenizer.get_vocab():
        stop_ids.append(tokenizer.convert_tokens_to_ids(terminator))
    started = time.perf_counter()
    answers = answer_all(model, tokenizer, [prompt for prompt, _ in rows], stop_ids, args.max_new_tokens)
    score(label, answers, rows, time.perf_counter() - started)
    return answers


def show_example(rows: list[tuple[str, str]], columns: dict[str, list[str]]) -> None:
    """One held-out row, preferably one the base model gets wrong and the others get right."""
    labels = list(columns)
    pick = 0
    for i, (_, expected) in enumerate(rows):
        if columns[labels[0]][i] != expected and all(columns[k][i] == expected for k in labels[1:]):
            pick = i
            break
    prompt, expected = rows[pick]
    print(f"\n  held-out example {pick}: {prompt!r}")
    print(f"  {'expected':<8} {expected!r}")
    for label in labels:
        print(f"  {label:<8} {columns[label][pick]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--run", type=Path, help="run folder of `ft train` (adapter + run.json)")
    parser.add_argument("--merged", type=Path, help="folder written by `ft merge`")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()

    import torch

    from ft.base.quiet import quiet_libraries

    quiet_libraries()
    torch.manual_seed(0)
    cfg = read_config(args.config)
    if not cfg.test_datasets:
        raise SystemExit(f"{args.config}: needs test_datasets (the held-out rows)")
    rows = read_rows(Path(cfg.test_datasets[0].path), args.rows)
    run_info = json.loads((args.run / "run.json").read_text()) if args.run else {}
    base_folder = Path(run_info.get("base_model_path") or base_model_folder(cfg.base_model))
    pad_token = cfg.special_tokens.get("pad_token")
    quantize = bool(cfg.load_in_4bit)

    print(
        f"held-out rows: {len(rows)} from {cfg.test_datasets[0].path}; "
        f"greedy, at most {args.max_new_tokens} new tokens"
    )
    columns: dict[str, list[str]] = {}
    model = load_model(base_folder, cfg, quantize)
    columns["base"] = run_model("base", model, load_tokenizer(base_folder, pad_token), rows, args)
    if args.run:
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(model, args.run).eval()
        tokenizer = load_tokenizer(args.run, pad_token)
        columns["tuned"] = run_model("tuned", tuned, tokenizer, rows, args, run_info.get("terminator"))
    del model
    if args.merged:
        merged = load_model(args.merged, cfg, quantize=False)
        tokenizer = load_tokenizer(args.merged, pad_token)
        columns["merged"] = run_model("merged", merged, tokenizer, rows, args, run_info.get("terminator"))
    show_example(rows, columns)


if __name__ == "__main__":
    main()
