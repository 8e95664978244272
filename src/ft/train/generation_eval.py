"""Generation metrics at each evaluation during training (axolotl's do_causal_lm_eval /
eval_causal_lm_metrics): the model answers the held-out prompts greedily and the answers are scored
against the held-out answers with the metrics of `ft eval` (ft.data.metrics).

A held-out row is cut at its first trained token: the ids before are the prompt (exactly as
trained), the trained ids are the reference (its terminator left out). Generation stops at EOS or
the format's terminator, or after as many tokens as the reference has plus a margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ft.data.metrics import bleu, chrf, exact_match, rouge, ter
from ft.data.tokens import IGNORE_INDEX

MAX_ROWS = 256
"""Held-out rows scored at most (generation is slow; the loss still covers the whole split)."""
MARGIN = 16
"""New tokens allowed beyond the reference's length."""


@dataclass(frozen=True)
class GenerationEval:
    metrics: tuple[str, ...]
    stop_ids: tuple[int, ...]


def prompts_and_references(rows: Any, stop_ids: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids) of the held-out rows that have a prompt and something trained."""
    pairs = []
    for row in rows:
        ids, labels = list(row["input_ids"]), list(row["labels"])
        trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        if not trained or trained[0] == 0:
            continue
        reference = [ids[i] for i in trained]
        while reference and reference[-1] in stop_ids:
            reference.pop()
        pairs.append((ids[: trained[0]], reference))
        if len(pairs) == MAX_ROWS:
            break
    return pairs


def generate_answers(
    model: Any, prompts: Sequence[list[int]], budgets: Sequence[int], stop_ids: Sequence[int]
) -> list[list[int]]:
    """Greedy continuations of each prompt, one at a time, without the stop token."""
    import torch

    device = next(model.parameters()).device
    answers = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for prompt, budget in zip(prompts, budgets, strict=True):
            tensor = torch.tensor([prompt], device=device)
            out = model.generate(
                input_ids=tensor,
                attention_mask=torch.ones_like(tensor),
                max_new_tokens=budget,
                do_sample=False,
                eos_token_id=list(stop_ids),
                pad_token_id=stop_ids[0],
            )
            new = out[0, len(prompt) :].tolist()
            answers.append([t for t in new if t not in stop_ids])
    model.train(was_training)
    return answers


def score(
    metrics: Sequence[str], predictions: list[str], references: list[str], eval_loss: float | None
) -> dict[str, float]:
    """`eval_<metric>` values for the requested metrics."""
    found: dict[str, float] = {}
    for metric in metrics:
        if metric in ("sacrebleu", "bleu"):
            found[f"eval_{metric}"] = bleu(predictions, references)
        elif metric == "chrf":
            found["eval_chrf"] = chrf(predictions, references)
        elif metric == "ter":
            found["eval_ter"] = ter(predictions, references)
        elif metric == "exact_match":
            found["eval_exact_match"] = sum(map(exact_match, predictions, references)) / max(
                len(references), 1
            )
        elif metric == "rouge":
            rows = [rouge(p, r) for p, r in zip(predictions, references, strict=True)]
            for name in ("rouge1", "rouge2", "rougeL"):
                found[f"eval_{name}"] = sum(row[name] for row in rows) / max(len(rows), 1)
        elif metric == "perplexity" and eval_loss is not None:
            found["eval_perplexity"] = math.exp(min(eval_loss, 50.0))
    return found


def generation_metrics(
    model: Any, tokenizer: Any, rows: Any, settings: GenerationEval, eval_loss: float | None
) -> dict[str, float]:
    pairs = prompts_and_references(rows, settings.stop_ids)
    if not pairs:
        return {}
    prompts = [prompt for prompt, _ in pairs]
    budgets = [len(reference) + MARGIN for _, reference in pairs]
    answers = generate_answers(model, prompts, budgets, settings.stop_ids)
    predictions = [tokenizer.decode(ids, skip_special_tokens=True) for ids in answers]
    references = [tokenizer.decode(ids, skip_special_tokens=True) for _, ids in pairs]
    return score(settings.metrics, predictions, references, eval_loss)
