"""`ft eval` of a preference run (`rl`): on the held-out pairs, how much more likely the model
makes the chosen answer than the rejected one, and what it answers.

Per model: the log-probability of each answer given its prompt (summed over the answer's tokens,
terminator included: what DPO's loss compares), their mean margin and the share of pairs where
the chosen answer is the likelier one (accuracy); the loss and perplexity of the chosen answers;
greedy answers to the prompts scored against the chosen answer (exact match, ROUGE, BLEU).
`compare_base` evaluates the reference the run trained against (the base with the adapter off,
the adapter `lora_model_dir` continued, or `ref_model`) beside the tuned model, and adds DPO's
implicit reward: beta x (tuned margin - reference margin) per pair, its mean and accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.infer.evaluate import (
    EvalReport,
    EvalSettings,
    GenerationPlan,
    HeldOutRow,
    ModelResult,
    Progress,
    base_model,
    eval_target,
    generate_rows,
    generation_plan,
    held_out_row,
    load_noted,
    measure_run_forgetting,
    no_note,
    perplexity,
    samples,
    split_name,
    write_report,
)
from ft.runs.folder import RunInfo

if TYPE_CHECKING:
    from ft.config.schema import FtConfig
    from ft.data.pairs import PairExample
    from ft.infer.loading import LoadedModel

DEFAULT_BETA = 0.1


@dataclass(frozen=True)
class PairScores:
    """Log-probability margins of chosen over rejected answers on a set of pairs."""

    pairs: int
    margin: float
    """Mean of log p(chosen | prompt) - log p(rejected | prompt), in nats."""
    accuracy: float
    """Share of pairs whose chosen answer is the likelier."""
    chosen_logp: float
    rejected_logp: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerLogps:
    chosen: list[float]
    rejected: list[float]
    chosen_tokens: int

    @property
    def margins(self) -> list[float]:
        return [good - bad for good, bad in zip(self.chosen, self.rejected, strict=True)]

    def scores(self) -> PairScores:
        count = len(self.chosen)
        margins = self.margins
        return PairScores(
            pairs=count,
            margin=sum(margins) / count,
            accuracy=sum(m > 0 for m in margins) / count,
            chosen_logp=sum(self.chosen) / count,
            rejected_logp=sum(self.rejected) / count,
        )

    def chosen_loss(self) -> float:
        """Mean negative log-likelihood per token of the chosen answers."""
        return -sum(self.chosen) / max(self.chosen_tokens, 1)


def answer_logps(
    model: Any, pairs: list[PairExample], batch_size: int, pad_id: int, on_done: Any = None
) -> AnswerLogps:
    """log p(answer | prompt) of both answers of every pair, summed over the answer's tokens."""
    sequences = [(p.prompt_ids, answer) for p in pairs for answer in (p.chosen_ids, p.rejected_ids)]
    sums: list[float] = []
    for start in range(0, len(sequences), batch_size):
        sums += _batch_logps(model, sequences[start : start + batch_size], pad_id)
        if on_done is not None:
            on_done(min(start + batch_size, len(sequences)) // 2)
    return AnswerLogps(sums[0::2], sums[1::2], sum(len(p.chosen_ids) for p in pairs))


def _batch_logps(model: Any, batch: list[tuple[list[int], list[int]]], pad_id: int) -> list[float]:
    import torch

    from ft.data.tokens import IGNORE_INDEX, pad_batch

    ids = [prompt + answer for prompt, answer in batch]
    labels = [[IGNORE_INDEX] * len(prompt) + answer for prompt, answer in batch]
    input_ids, targets, mask = pad_batch(ids, labels, pad_id)
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
    shifted = targets[:, 1:].to(device)
    logps = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logps.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return [float(value) for value in (picked * (shifted != IGNORE_INDEX)).sum(dim=1)]


# ---------------------------------------------------------------------------------------------
# The run


def run_pair_eval(
    target: Path,
    settings: EvalSettings,
    on_progress: Progress | None = None,
    on_note: Callable[[str], None] = no_note,
) -> EvalReport:
    """`ft eval` for a preference run: pair margins, chosen-answer loss, generations; eval.json.
    `on_note` hears what is being loaded and how long it took."""
    from ft.data.pairs import held_out_pairs
    from ft.infer.loading import load_folder_tokenizer

    progress = on_progress or (lambda stage, done, total: None)
    cfg, run = eval_target(target, on_note)
    tokenizer = load_folder_tokenizer(run.run_dir)
    pairs = held_out_pairs(cfg, tokenizer)
    if not pairs:
        raise FtError(
            "the config has no held-out pairs to evaluate on",
            hint="set val_set_size (a share or a row count) or test_datasets in the config",
        )
    pairs = pairs[: settings.limit or len(pairs)]
    loaded = load_noted(run, on_note)
    rows = [row for p in pairs if (row := held_out_row([*p.prompt, *p.chosen], loaded.terminator))]
    plan, plan_notes = generation_plan(cfg, settings, loaded, rows)
    tuned_logps, tuned = _evaluate(loaded.model, "tuned", loaded, pairs, rows, plan, progress)
    base = rewards = None
    if settings.compare_base:
        with reference_model(loaded, cfg, run) as model:
            base_logps, base = _evaluate(model, "reference", loaded, pairs, rows, plan, progress)
        rewards = implicit_rewards(tuned_logps, base_logps, cfg.rl_beta or DEFAULT_BETA)
    forgetting = None
    if settings.forgetting:  # against the base model, as for SFT runs (not against the reference)
        forgetting = measure_run_forgetting(loaded, cfg, run, plan, settings.forgetting_limit, progress)
    report = EvalReport(
        run_dir=run.run_dir,
        split=split_name(cfg),
        rows=len(pairs),
        generated_rows=len(rows),
        max_new_tokens=plan.max_new_tokens,
        tuned=tuned,
        base=base,
        samples=samples(rows, tuned, base),
        notes=[
            "pairs: log-probabilities summed over each answer's tokens; eval loss: of the chosen answers; references: the chosen answers",
            *plan_notes,
        ],
        base_label=f"reference ({reference_name(cfg)})",
        rewards=rewards,
        forgetting=forgetting,
    )
    write_report(report, cfg)
    return report


def _evaluate(
    model: Any,
    label: str,
    loaded: LoadedModel,
    pairs: list[PairExample],
    rows: list[HeldOutRow],
    plan: GenerationPlan,
    progress: Progress,
) -> tuple[AnswerLogps, ModelResult]:
    from ft.infer.generate import pad_id_of

    logps = answer_logps(
        model,
        pairs,
        plan.loss_batch_size,
        pad_id_of(loaded),
        lambda done: progress(f"pairs {label}", done, len(pairs)),
    )
    scores, generations = generate_rows(model, label, loaded, rows, plan, progress)
    loss = logps.chosen_loss()
    return logps, ModelResult(loss, perplexity(loss), scores, generations, pairs=logps.scores().to_json())


def implicit_rewards(tuned: AnswerLogps, reference: AnswerLogps, beta: float) -> dict[str, float]:
    """DPO's implicit reward margin, beta x (tuned margin - reference margin), per pair: its mean and
    the share of pairs where it is positive (trl's rewards/margins and rewards/accuracies)."""
    per_pair = [beta * (t - r) for t, r in zip(tuned.margins, reference.margins, strict=True)]
    return {
        "beta": beta,
        "margin": sum(per_pair) / len(per_pair),
        "accuracy": sum(value > 0 for value in per_pair) / len(per_pair),
    }


def reference_name(cfg: FtConfig) -> str:
    if cfg.ref_model:
        return f"ref_model {cfg.ref_model}"
    if cfg.lora_model_dir and cfg.adapter:
        return f"the adapter of {cfg.lora_model_dir}"
    return "the base model" if cfg.adapter else "the base weights"


@contextmanager
def reference_model(loaded: LoadedModel, cfg: FtConfig, run: RunInfo) -> Iterator[Any]:
    """The model the run trained against: the adapter lora_model_dir continued (loaded beside the
    tuned one and switched to), ref_model, or the base (adapter off / base weights)."""
    if cfg.ref_model:
        from ft.infer.loading import inference_precision, prepare_for_generation
        from ft.models.loading import load_model_from_path, resolve_base_model_path

        path = resolve_base_model_path(cfg.model_copy(update={"base_model": cfg.ref_model, "revision": None}))
        quantized = loaded.has_adapter and (run.data.get("quantization") or {}).get("bits") is not None
        model = load_model_from_path(cfg, path, None, inference_precision(cfg), quantize=quantized)
        yield prepare_for_generation(model, quantized)
        return
    if cfg.lora_model_dir and loaded.has_adapter:
        model = loaded.model
        model.load_adapter(str(Path(cfg.lora_model_dir).expanduser()), adapter_name="reference")
        model.set_adapter("reference")
        try:
            yield model
        finally:
            model.set_adapter("default")
            model.delete_adapter("reference")
        return
    with base_model(loaded, cfg, run) as model:
        yield model
