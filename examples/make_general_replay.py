"""General chat rows to mix into the quickstart's task data: the base model's own answers.

    python examples/make_general_replay.py      # writes examples/general_replay.jsonl

The prompts (`general_prompts.txt`, 121 lines, written for ft; none is among the prompts
`ft eval --forgetting` measures with) are answered greedily by SmolLM2-135M-Instruct loaded as
`configs/quickstart.yml` trains it (4-bit NF4, its chat template), through ft's own generation
function. Training on a model's own answers ("replay" by self-distillation) keeps its behaviour on
general prompts in the loss while it learns the task. Answers that reached the token limit (cut
mid-sentence) are left out, so the mix never teaches the model to stop mid-sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "quickstart.yml"
MAX_NEW_TOKENS = 96


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ft.base.quiet import quiet_libraries
    from ft.config.load import load_config
    from ft.data.chat_templates import chat_template_jinja
    from ft.infer.forgetting import GeneralPrompt, answer_prompts, prompt_ids
    from ft.infer.loading import loaded_for_model, prepare_for_generation
    from ft.models.loading import load_base_model
    from ft.models.precision import resolve_precision
    from ft.models.tokenizer import load_tokenizer

    quiet_libraries()
    cfg = load_config(CONFIG)
    tokenizer = load_tokenizer(cfg)
    tokenizer.chat_template = chat_template_jinja(cfg, tokenizer)
    model = prepare_for_generation(load_base_model(cfg, tokenizer, resolve_precision(cfg)), quantized=True)
    loaded = loaded_for_model(cfg, tokenizer, model)
    lines = [line.strip() for line in (HERE / "general_prompts.txt").read_text().splitlines() if line.strip()]
    prompts = [GeneralPrompt(f"replay-{i}", "replay", "", text) for i, text in enumerate(lines, 1)]

    def progress(stage: str, done: int, total: int) -> None:
        print(f"{done}/{total}", end="\r", flush=True)

    answers = answer_prompts(model, loaded, prompt_ids(loaded, prompts), MAX_NEW_TOKENS, progress)
    rows = [
        {"messages": [{"role": "user", "content": p.prompt}, {"role": "assistant", "content": a}]}
        for p, a in zip(prompts, answers, strict=True)
        if a and len(tokenizer(a, add_special_tokens=False)["input_ids"]) < MAX_NEW_TOKENS - 1
    ]
    out = HERE / "general_replay.jsonl"
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} of {len(prompts)} rows to {out} (the others reached {MAX_NEW_TOKENS} tokens)")


if __name__ == "__main__":
    main()
