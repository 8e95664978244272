"""`make verify-gguf`: llama.cpp answers the quickstart's held-out dates from ft's GGUF files as the
merged model does.

    python scripts/verify_gguf.py configs/quickstart.yml --merged outputs/quickstart-merged \\
        --gguf outputs/quickstart-gguf/quickstart-f16.gguf outputs/quickstart-gguf/quickstart-q8_0.gguf \\
        --llama-python ~/.cache/ft/llama-cpp-venv/bin/python

The merged model answers with transformers (greedy, its saved chat template); each GGUF file
answers with llama.cpp through llama-cpp-python's chat completion, which renders the chat template
stored in the file. Printed per file: exact matches against the expected dates, answers identical
to the merged model's, and on a few prompts the largest next-token logit difference and top-1
agreement against the merged model. Fails (exit 1) when f16 gives a different answer than the
merged model on more than 1 row in 40, or q8_0 on more than 3.

With `--lora ADAPTER.gguf --lora-base BASE.gguf`, llama.cpp also answers from the base GGUF with
the LoRA adapter ft exported (`--adapter-only`) applied at load time: a different base (the shipped
Q4_1 file, not the NF4 weights the adapter was trained against), so its exact matches are reported,
and it fails only below half of the merged model's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from demo_compare import answer_all, load_model, load_tokenizer, read_config, read_rows

ALLOWED_DIFFERENT = {"f16": 1, "q8_0": 3}
"""Greedy answers may flip where two tokens are nearly tied and the file's rounding decides."""
LOGIT_PROMPTS = 4


def llama_cpp_results(
    llama_python: str,
    gguf: Path,
    questions: list[str],
    prompts: list[list[int]],
    max_tokens: int,
    lora: Path | None = None,
) -> dict[str, Any]:
    script = Path(__file__).with_name("llama_answers.py")
    request = json.dumps({"questions": questions, "prompts": prompts, "max_tokens": max_tokens})
    command = [llama_python, str(script), str(gguf), *([str(lora)] if lora else [])]
    done = subprocess.run(command, input=request, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"llama.cpp failed on {gguf}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def merged_logits(model: Any, prompts: list[list[int]]) -> list[Any]:
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids])).logits[0, -1].float() for ids in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--merged", type=Path, required=True)
    parser.add_argument("--gguf", type=Path, nargs="+", required=True)
    parser.add_argument("--llama-python", required=True)
    parser.add_argument("--lora", type=Path, help="a LoRA adapter GGUF (ft export RUN --adapter-only)")
    parser.add_argument("--lora-base", type=Path, help="the base model GGUF the adapter is applied to")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()

    import torch

    from ft.base.quiet import quiet_libraries

    quiet_libraries()
    cfg = read_config(args.config)
    rows = read_rows(Path(cfg.test_datasets[0].path), args.rows)
    questions = [question for question, _ in rows]
    tokenizer = load_tokenizer(args.merged, cfg.special_tokens.get("pad_token"))
    model = load_model(args.merged, cfg, quantize=False)
    stop_ids = json.loads((args.merged / "generation_config.json").read_text())["eos_token_id"]
    started = time.perf_counter()
    merged = answer_all(
        model,
        tokenizer,
        questions,
        stop_ids if isinstance(stop_ids, list) else [stop_ids],
        args.max_new_tokens,
    )
    exact = exact_merged = sum(a == e for a, (_, e) in zip(merged, rows, strict=True))
    print(f"held-out rows: {len(rows)}; greedy, at most {args.max_new_tokens} new tokens")
    print(
        f"  merged (transformers)  exact match {exact:>2}/{len(rows)}  ({time.perf_counter() - started:.0f} s)"
    )
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for q in questions[:LOGIT_PROMPTS]
    ]
    reference = merged_logits(model, prompts)

    failed = False
    for gguf in args.gguf:
        kind = gguf.stem.rsplit("-", 1)[-1]
        started = time.perf_counter()
        result = llama_cpp_results(args.llama_python, gguf, questions, prompts, args.max_new_tokens)
        answers = result["answers"]
        exact = sum(a == e for a, (_, e) in zip(answers, rows, strict=True))
        same = sum(a == m for a, m in zip(answers, merged, strict=True))
        theirs = [torch.tensor(row) for row in result["logits"]]
        diff = max(float((a - b).abs().max()) for a, b in zip(theirs, reference, strict=True))
        top1 = sum(int(a.argmax() == b.argmax()) for a, b in zip(theirs, reference, strict=True))
        print(
            f"  {gguf.name:<22} exact match {exact:>2}/{len(rows)}, same answer as merged {same:>2}/{len(rows)}, "
            f"next-token logits max |Δ| {diff:.3g}, top-1 {top1}/{len(prompts)}  "
            f"({time.perf_counter() - started:.0f} s, chat format {result['chat_format']})"
        )
        for answer, expected_merged, (question, _) in zip(answers, merged, rows, strict=True):
            if answer != expected_merged:
                print(f"      differs: {question!r}: llama.cpp {answer!r}, merged {expected_merged!r}")
        if len(rows) - same > ALLOWED_DIFFERENT.get(kind, 3):
            failed = True
    if args.lora and args.lora_base:
        result = llama_cpp_results(
            args.llama_python, args.lora_base, questions, [], args.max_new_tokens, args.lora
        )
        lora_exact = sum(a == e for a, (_, e) in zip(result["answers"], rows, strict=True))
        print(f"  {args.lora_base.name} + {args.lora.name}: exact match {lora_exact:>2}/{len(rows)}")
        failed = failed or lora_exact < exact_merged / 2
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
