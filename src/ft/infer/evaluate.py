"""`ft eval`: eval loss and perplexity on the held-out split, and generation metrics on it.

The held-out split is prepared exactly as in training (`ft.data.pipeline.prepare_data` with the run's saved
tokenizer), so the loss is the one the trainer reported at its last eval when the batch holds the
whole split. Generation metrics: each held-out row is cut at its first trained segment; the model
answers the prompt part (rendered as trained, greedy) and the answer is compared with the
reference, the text of that first trained turn without its terminator. With `compare_base`, the
same rows go through the base model (the adapter switched off), for a side-by-side table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.data.metrics import GenerationScores, score_generations
from ft.data.prompts import Segment, segments_text
from ft.runs.folder import EVAL_JSON, RunInfo, read_run, write_json_atomic

if TYPE_CHECKING:
    from ft.config.schema import FtConfig
    from ft.data.pipeline import Example
    from ft.infer.forgetting import ForgettingResult
    from ft.infer.loading import LoadedModel

Progress = Callable[[str, int, int], None]
"""on_progress(stage, done, total): stage is 'loss tuned', 'generate base', ..."""


@dataclass(frozen=True)
class EvalSettings:
    limit: int | None = None
    """Evaluate the first N held-out rows only."""
    compare_base: bool = False
    max_new_tokens: int | None = None
    """Most tokens per generated answer; default: twice the longest reference answer (see answer_budget)."""
    batch_size: int | None = None
    """Rows per forward pass for the loss and per generate() call; default: eval_batch_size or
    micro_batch_size for the loss, from the free memory for generation."""
    forgetting: bool = False
    """Also measure forgetting against the base model on ft's general prompts and text."""
    forgetting_limit: int | None = None
    """The first N general prompts and paragraphs only (tests)."""


MIN_NEW_TOKENS = 16
MAX_DEFAULT_NEW_TOKENS = 256


def answer_budget(tokenizer: Any, references: Sequence[str]) -> int:
    """Twice the longest reference answer in tokens (at least 16, at most 256): a right answer fits
    with room, and a base model that rambles (--compare-base) stops long before minutes pass."""
    longest = max(
        (len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in references), default=0
    )
    return max(MIN_NEW_TOKENS, min(MAX_DEFAULT_NEW_TOKENS, 2 * longest + 1))


@dataclass(frozen=True)
class HeldOutRow:
    prompt: list[Segment]
    reference: str


@dataclass
class ModelResult:
    loss: float
    perplexity: float
    scores: GenerationScores | None
    generations: list[str] = field(default_factory=list)
    pairs: dict[str, float] | None = None
    """Preference runs: log-probability margins of chosen over rejected (ft.infer.pair_eval)."""

    def to_json(self) -> dict[str, Any]:
        metrics = self.scores.to_json() if self.scores is not None else None
        data = {"loss": self.loss, "perplexity": self.perplexity, "metrics": metrics}
        if self.pairs is not None:
            data["pairs"] = self.pairs
        return data


@dataclass
class EvalReport:
    run_dir: Path
    split: str
    rows: int
    generated_rows: int
    max_new_tokens: int
    tuned: ModelResult
    base: ModelResult | None
    samples: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)
    base_label: str = "base"
    """What `base` is: the base model, or for preference runs the reference they trained against."""
    rewards: dict[str, float] | None = None
    """Preference runs with the reference evaluated: DPO's implicit reward margin and accuracy."""
    forgetting: ForgettingResult | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "split": self.split,
            "rows": self.rows,
            "generated_rows": self.generated_rows,
            "max_new_tokens": self.max_new_tokens,
            "loss": self.tuned.loss,
            "perplexity": self.tuned.perplexity,
            "metrics": self.tuned.to_json()["metrics"],
            "tuned": self.tuned.to_json(),
        }
        if self.base is not None:
            data["base"] = self.base.to_json()
            data["base_label"] = self.base_label
        if self.rewards is not None:
            data["rewards"] = self.rewards
        if self.forgetting is not None:
            data["forgetting"] = self.forgetting.to_json()
        data["notes"] = self.notes
        data["samples"] = self.samples
        return data


# ---------------------------------------------------------------------------------------------
# What to evaluate


def resolve_target(target: Path) -> tuple[FtConfig, RunInfo]:
    """A run folder (its config.yml) or a config (its output_dir must hold a finished run).

    With a config, its data settings are used: a changed test_datasets is evaluated as given.
    """
    from ft.config.load import load_config

    target = Path(target).expanduser()
    if target.is_dir():
        run = read_run(target)
        return run.config, run
    cfg = load_config(target)
    return cfg, read_run(Path(cfg.output_dir).expanduser())


def split_name(cfg: FtConfig) -> str:
    if cfg.test_datasets:
        return "test_datasets: " + ", ".join(d.path for d in cfg.test_datasets)
    if cfg.val_set_size:
        return f"val_set_size: {cfg.val_set_size:g} (seed {cfg.seed})"
    return "none"


def held_out_examples(cfg: FtConfig, tokenizer: Any) -> list[Example]:
    """The held-out rows with their segments, chosen as `ft.data.pipeline.prepare_data` chooses them."""
    from ft.data.pipeline import DataReport, encode_sources, read_sources, split_training_data

    if cfg.test_datasets:
        return encode_sources(cfg, read_sources(cfg.test_datasets, "test_datasets"), tokenizer, DataReport())
    return split_training_data(cfg, tokenizer)[1]


def held_out_row(segments: Sequence[Segment], terminator: str) -> HeldOutRow | None:
    """Prompt (segments before the first trained one) and reference (the first trained turn, without
    its terminator); None when there is no prompt to answer (plain completion text is all trained)."""
    first = next((i for i, s in enumerate(segments) if s.trained), None)
    if first is None or not any(s.text.strip() and not s.special for s in segments[:first]):
        return None
    answer = []
    for segment in segments[first:]:
        if not segment.trained or segment.special:
            break
        answer.append(segment.text)
    reference = "".join(answer).strip()
    # A tokenizer chat template writes the terminator inside the answer's text.
    if reference.endswith(terminator):
        reference = reference[: -len(terminator)].rstrip()
    return HeldOutRow(list(segments[:first]), reference)


# ---------------------------------------------------------------------------------------------
# Loss


def eval_loss(model: Any, dataset: Any, batch_size: int, pad_id: int, on_row: Callable[[int], None]) -> float:
    """Mean cross-entropy over all trained tokens of the split (labels != -100).

    Token-weighted, so the value does not depend on the batch size; the trainer's eval_loss is a
    mean of per-batch means, equal to this when one batch holds the split.
    """
    import torch
    import torch.nn.functional as F

    from ft.data.tokens import IGNORE_INDEX, pad_batch
    from ft.models.adapter import text_logits

    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        ids, labels, mask = pad_batch(batch["input_ids"], batch["labels"], pad_id)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logits = text_logits(logits, ids.shape[1])
        targets = labels[:, 1:].to(device)
        loss = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total += float(loss)
        tokens += int((targets != IGNORE_INDEX).sum())
        on_row(min(start + batch_size, len(dataset)))
    if tokens == 0:
        raise FtError("the held-out split has no trained tokens: nothing to compute a loss on")
    return total / tokens


def perplexity(loss: float) -> float:
    """exp(loss); infinity rather than an overflow error for a hopeless model."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------------------------------------
# The run


def no_note(line: str) -> None:
    return None


def run_eval(
    target: Path,
    settings: EvalSettings,
    on_progress: Progress | None = None,
    on_note: Callable[[str], None] = no_note,
) -> EvalReport:
    """The whole `ft eval`: load, loss, generations, metrics (base too when asked); writes eval.json.
    `on_note` hears what is being loaded and how long it took."""
    from ft.data.pipeline import prepare_data
    from ft.infer.loading import load_folder_tokenizer

    progress = on_progress or (lambda stage, done, total: None)
    cfg, run = eval_target(target, on_note)
    # The data first (tokenizer only): a config without a held-out split fails before weights load.
    tokenizer = load_folder_tokenizer(run.run_dir)
    prepared = prepare_data(cfg, tokenizer, note=on_note)
    if prepared.eval is None or len(prepared.eval) == 0:
        raise FtError(
            "the config has no held-out split to evaluate on",
            hint="set val_set_size (a share or a row count) or test_datasets in the config",
        )
    examples = held_out_examples(cfg, tokenizer)
    check_same_rows(examples, prepared.eval)
    loaded = load_noted(run, on_note)
    count = min(settings.limit or len(examples), len(examples))
    dataset = prepared.eval.select(range(count))
    rows = [row for e in examples[:count] if (row := held_out_row(e.segments, loaded.terminator))]
    notes = [] if rows else ["no row has a prompt/answer split (completion text): no generation metrics"]
    plan, plan_notes = generation_plan(cfg, settings, loaded, rows)
    notes += plan_notes
    tuned = evaluate_model(loaded.model, "tuned", loaded, dataset, rows, plan, progress)
    base = None
    if settings.compare_base:
        with base_model(loaded, cfg, run) as model:
            base = evaluate_model(model, "base", loaded, dataset, rows, plan, progress)
    forgetting = None
    if settings.forgetting:
        forgetting = measure_run_forgetting(loaded, cfg, run, plan, settings.forgetting_limit, progress)
    report = EvalReport(
        run_dir=run.run_dir,
        split=split_name(cfg),
        rows=count,
        generated_rows=len(rows),
        max_new_tokens=plan.max_new_tokens,
        tuned=tuned,
        base=base,
        samples=samples(rows, tuned, base),
        notes=notes,
        forgetting=forgetting,
    )
    write_report(report, cfg)
    return report


def write_report(report: EvalReport, cfg: FtConfig) -> None:
    """eval.json in the run folder, and its card again: the card shows the new eval results."""
    from ft.runs.card import write_run_card

    write_json_atomic(report.run_dir / EVAL_JSON, report.to_json())
    write_run_card(report.run_dir, repo=cfg.hub_model_id)


def eval_target(target: Path, on_note: Callable[[str], None]) -> tuple[FtConfig, RunInfo]:
    """The run's config and folder, with the Hub (or its cache) decided before anything loads."""
    from ft.config.hub import EVAL_NEEDS, prepare_hub_access

    cfg, run = resolve_target(target)
    for line in prepare_hub_access(cfg.model_copy(update={"base_model": run.base_model_path}), EVAL_NEEDS):
        on_note(line)
    return cfg, run


def load_noted(run: RunInfo, on_note: Callable[[str], None]) -> LoadedModel:
    """The run's model for inference; `on_note` hears what loads and how long it took."""
    from ft.infer.loading import load_for_inference

    on_note(f"loading the model in {run.run_dir}")
    began = time.monotonic()
    loaded = load_for_inference(run.run_dir)
    on_note(f"loaded in {time.monotonic() - began:.1f} s: {loaded.description}")
    return loaded


def generation_plan(
    cfg: FtConfig, settings: EvalSettings, loaded: LoadedModel, rows: list[HeldOutRow]
) -> tuple[GenerationPlan, list[str]]:
    """The batch sizes and answer budget for these rows, and a note when the budget was chosen here."""
    from ft.infer.generate import prompt_ids

    max_new = settings.max_new_tokens or answer_budget(loaded.tokenizer, [r.reference for r in rows])
    notes = []
    if settings.max_new_tokens is None:
        notes.append(
            f"max_new_tokens {max_new}: twice the longest reference answer (--max-new-tokens to change)"
        )
    plan = GenerationPlan(
        max_new,
        settings.batch_size or cfg.eval_batch_size or cfg.micro_batch_size,
        settings.batch_size,
        [prompt_ids(loaded, row.prompt) for row in rows],
    )
    return plan, notes


def check_same_rows(examples: list[Example], dataset: Any) -> None:
    """The rows rendered here must be the rows prepared for the loss (same split, same order)."""
    if len(examples) != len(dataset) or (examples and examples[0].input_ids != dataset[0]["input_ids"]):
        raise FtError(
            f"the held-out rows ({len(examples)}) do not match the prepared eval split ({len(dataset)})",
            hint="a stale prepared-data cache? remove dataset_prepared_path's folder and retry",
        )


@dataclass(frozen=True)
class GenerationPlan:
    """How the held-out rows are evaluated: the answer budget, the loss batch, the generation batch
    (None: from the free memory) and each row's prompt ids."""

    max_new_tokens: int
    loss_batch_size: int
    generation_batch_size: int | None
    prompts: list[list[int]]


def evaluate_model(
    model: Any,
    label: str,
    loaded: LoadedModel,
    dataset: Any,
    rows: list[HeldOutRow],
    plan: GenerationPlan,
    progress: Progress,
) -> ModelResult:
    from ft.infer.generate import pad_id_of

    loss = eval_loss(
        model,
        dataset,
        plan.loss_batch_size,
        pad_id_of(loaded),
        lambda done: progress(f"loss {label}", done, len(dataset)),
    )
    scores, generations = generate_rows(model, label, loaded, rows, plan, progress)
    return ModelResult(loss, perplexity(loss), scores, generations)


def generate_rows(
    model: Any,
    label: str,
    loaded: LoadedModel,
    rows: list[HeldOutRow],
    plan: GenerationPlan,
    progress: Progress,
) -> tuple[GenerationScores | None, list[str]]:
    """Greedy answers to the held-out prompts (in batches) and their scores against the references."""
    from ft.infer.generate import GenerationSettings, generate_in_batches

    generations = generate_in_batches(
        model,
        loaded,
        plan.prompts[: len(rows)],
        GenerationSettings(max_new_tokens=plan.max_new_tokens),
        plan.generation_batch_size,
        lambda done: progress(f"generate {label}", done, len(rows)),
    )
    scores = score_generations(generations, [r.reference for r in rows]) if rows else None
    return scores, generations


@contextmanager
def base_model(loaded: LoadedModel, cfg: FtConfig, run: RunInfo) -> Iterator[Any]:
    """The base model: the adapter switched off (same weights, same quantization), or for a full
    fine-tune the base weights loaded beside the tuned ones."""
    if loaded.has_adapter:
        with loaded.model.disable_adapter():
            yield loaded.model
        return
    from ft.infer.loading import inference_precision, prepare_for_generation
    from ft.models.loading import load_model_from_path, locate_base_model

    quantized = (run.data.get("quantization") or {}).get("bits") is not None
    base_path = locate_base_model(run.base_model_path, cfg)
    model = load_model_from_path(
        cfg, base_path, loaded.tokenizer, inference_precision(cfg), quantize=quantized
    )
    yield prepare_for_generation(model, quantized)


def measure_run_forgetting(
    loaded: LoadedModel,
    cfg: FtConfig,
    run: RunInfo,
    plan: GenerationPlan,
    limit: int | None,
    progress: Progress,
) -> ForgettingResult:
    """`ft eval --forgetting`: the base's answers to ft's general prompts (generated in batches with
    the base, or read from the cache), then both models on them and on ft's general text; the
    batch sizes are the held-out rows' (`--batch-size`)."""
    from ft.infer.forgetting import (
        ForgettingSettings,
        adapter_off_forward,
        base_identity,
        build_probe,
        forgetting_cache_dir,
        measure_forgetting,
        model_forward,
    )

    identity = base_identity(run.base_model_path, run.data.get("quantization"))
    batch_size = plan.loss_batch_size
    settings = ForgettingSettings(
        batch_size=batch_size, generation_batch_size=plan.generation_batch_size, limit=limit
    )
    pad_id = (
        loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else loaded.stop_ids[0]
    )
    tuned = model_forward(loaded.model)
    with base_model(loaded, cfg, run) as model:
        probe = build_probe(loaded, model, identity, settings, forgetting_cache_dir(), progress)
        if not loaded.has_adapter:  # a full fine-tune: the base weights loaded beside the tuned ones
            return measure_forgetting(probe, tuned, model_forward(model), pad_id, batch_size, progress)
    return measure_forgetting(probe, tuned, adapter_off_forward(loaded.model), pad_id, batch_size, progress)


def samples(rows: list[HeldOutRow], tuned: ModelResult, base: ModelResult | None) -> list[dict[str, str]]:
    out = []
    for index, row in enumerate(rows):
        sample = {
            "prompt": segments_text(row.prompt),
            "reference": row.reference,
            "tuned": tuned.generations[index],
        }
        if base is not None:
            sample["base"] = base.generations[index]
        out.append(sample)
    return out
