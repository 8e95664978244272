"""Forgetting, measured: how far a tuned model has drifted from its base model on general prompts
and general text that have nothing to do with the task (ft's own sets, `ft/infer/general/`).

The base model answers each general prompt greedily, once (cached: the answers depend only on the
base, its quantization, the prompt format and the prompts). Each prompt and its base answer are
then encoded exactly like a training example, and both models read them in one forward pass each
(teacher forcing), which gives, over the answer tokens and the terminator:
- KL(base || tuned) per token, in nats: how much the next-token distribution moved;
- the mean log-likelihood of the base's answers under each model;
- unchanged answers: prompts where both models pick the same next token at every position of the
  base's answer, i.e. where the tuned model, decoding greedily, writes the base's answer.
  (Both argmaxes come from the same forward layout, so generation noise does not count as change.)
General-text perplexity: both models on short paragraphs, trained as completion text.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.data.examples import render_completion
from ft.data.prompts import Message
from ft.data.tokens import IGNORE_INDEX, Encoded, encode_many, pad_batch

if TYPE_CHECKING:
    from ft.config.schema import FtConfig
    from ft.infer.loading import LoadedModel
    from ft.models.precision import Precision

PROMPTS_FILE = "prompts.jsonl"
TEXT_FILE = "text.jsonl"
CACHE_LAYOUT = 1

Forward = Callable[[Any, Any], Any]
"""forward(input_ids, attention_mask) -> logits of the text's positions."""
Progress = Callable[[str, int, int], None]

LITTLE = {"kl": 0.05, "unchanged": 0.80, "perplexity_increase": 0.05}
"""Little forgetting: KL below 0.05 nats/token, at least 80% of answers unchanged and general
perplexity up by at most 5%. ft's thresholds (not a published standard), stated with every verdict."""
STRONG = {"kl": 0.5, "unchanged": 0.30, "perplexity_increase": 0.5}
"""Strong forgetting: any of KL at least 0.5 nats/token, fewer than 30% of answers unchanged, or
general perplexity up by 50% or more. Between the two: some forgetting."""


@dataclass(frozen=True)
class GeneralPrompt:
    id: str
    category: str
    language: str
    prompt: str


@dataclass(frozen=True)
class ForgettingSettings:
    max_new_tokens: int = 32
    """Longest base answer: the probe compares the first tokens of each answer, where the model's
    behaviour on the prompt shows; longer answers only cost time."""
    batch_size: int = 8
    """Rows per forward pass of the two models (KL, log-likelihoods, perplexity)."""
    generation_batch_size: int | None = None
    """Prompts per generate() call for the base's answers; None: from the free memory
    (ft.infer.generate.default_batch_size). Greedy answers do not depend on it."""
    limit: int | None = None
    """The first N prompts and paragraphs only (for tests)."""


def _read_jsonl(name: str) -> list[dict[str, Any]]:
    text = resources.files("ft.infer").joinpath("general", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def general_prompts(limit: int | None = None) -> list[GeneralPrompt]:
    """ft's general prompts: facts, arithmetic, short writing, code, instructions, other languages."""
    return [GeneralPrompt(**row) for row in _read_jsonl(PROMPTS_FILE)][:limit]


def general_texts(limit: int | None = None) -> list[str]:
    """ft's general paragraphs (written for ft, Apache-2.0): everyday knowledge in five languages."""
    return [str(row["text"]) for row in _read_jsonl(TEXT_FILE)][:limit]


# ---------------------------------------------------------------------------------------------
# The probe: prompts, the base's answers, everything encoded


@dataclass
class Probe:
    prompts: list[GeneralPrompt]
    answers: list[str]
    rows: list[Encoded]
    """Each prompt with its base answer, encoded as a training example (the answer trained)."""
    texts: list[Encoded]


def prompt_ids(loaded: LoadedModel, prompts: Sequence[GeneralPrompt]) -> list[list[int]]:
    """Each prompt as a user turn, rendered and encoded as for generation."""
    from ft.infer.generate import prompt_ids as encode_prompt
    from ft.infer.generate import render_prompt

    return [encode_prompt(loaded, render_prompt(loaded, [Message("user", p.prompt)])) for p in prompts]


def answer_prompts(
    model: Any,
    loaded: LoadedModel,
    ids: list[list[int]],
    settings: ForgettingSettings,
    progress: Progress,
) -> list[str]:
    """The model's greedy answers, left-padded in batches through ft's generation (ft.infer.generate):
    the same answers as one prompt at a time (tests/test_forgetting.py compares)."""
    from ft.infer.generate import GenerationSettings, generate_in_batches

    return generate_in_batches(
        model,
        loaded,
        ids,
        GenerationSettings(max_new_tokens=settings.max_new_tokens),
        settings.generation_batch_size,
        lambda done: progress("forgetting: base answers", done, len(ids)),
    )


def build_probe(
    loaded: LoadedModel,
    base: Any,
    base_identity: dict[str, Any],
    settings: ForgettingSettings,
    cache_dir: Path | None,
    progress: Progress,
) -> Probe:
    """The general prompts, the base model's answers (from the cache when they were made before)
    and every row encoded. `base` is the base model to generate with (the adapter switched off)."""
    prompts = general_prompts(settings.limit)
    ids = prompt_ids(loaded, prompts)
    key = answers_key(base_identity, ids, settings.max_new_tokens)
    cached = cache_dir / f"{key}.json" if cache_dir is not None else None
    answers = read_cached_answers(cached, len(prompts))
    if answers is None:
        answers = answer_prompts(base, loaded, ids, settings, progress)
        if cached is not None:
            write_cached_answers(cached, answers)
    chat, tokens = loaded.chat_format, loaded.tokens
    rendered = [
        chat.render([Message("user", p.prompt), Message("assistant", a)], tokens)
        for p, a in zip(prompts, answers, strict=True)
    ]
    texts = [render_completion(text, tokens) for text in general_texts(settings.limit)]
    tokenizer = loaded.tokenizer
    return Probe(prompts, answers, encode_many(tokenizer, rendered), encode_many(tokenizer, texts))


def answers_key(base_identity: dict[str, Any], ids: list[list[int]], max_new_tokens: int) -> str:
    """Everything the base's greedy answers depend on: the base model (path, files, quantization),
    the prompts as token ids (which covers the prompt set, the template and the tokenizer)."""
    parts = {"layout": CACHE_LAYOUT, "base": base_identity, "ids": ids, "max_new_tokens": max_new_tokens}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def base_identity(base_path: str, quantization: Any) -> dict[str, Any]:
    """The base model's path, its weight files' sizes and times, and how it is quantized."""
    folder = Path(base_path)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return {"path": base_path, "files": stats, "quantization": quantization}


def read_cached_answers(path: Path | None, count: int) -> list[str] | None:
    if path is None or not path.is_file():
        return None
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))["answers"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(answers, list) or len(answers) != count:
        return None
    return [str(answer) for answer in answers]


def write_cached_answers(path: Path, answers: list[str]) -> None:
    from ft.runs.folder import write_json_atomic

    write_json_atomic(path, {"answers": answers})


def forgetting_cache_dir() -> Path:
    from ft.models.gguf import default_cache_dir

    return default_cache_dir() / "forgetting"


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Totals:
    """Sums over answer positions and prompts, per category and overall."""

    positions: int = 0
    kl: float = 0.0
    base_logprob: float = 0.0
    tuned_logprob: float = 0.0
    prompts: int = 0
    unchanged: int = 0

    def add(self, other: Totals) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def means(self) -> dict[str, float]:
        per = max(self.positions, 1)
        return {
            "kl": self.kl / per,
            "base_logprob": self.base_logprob / per,
            "tuned_logprob": self.tuned_logprob / per,
            "logprob_delta": (self.tuned_logprob - self.base_logprob) / per,
            "unchanged": self.unchanged / max(self.prompts, 1),
            "prompts": self.prompts,
        }


@dataclass
class ForgettingResult:
    kl: float
    base_logprob: float
    tuned_logprob: float
    logprob_delta: float
    unchanged: float
    prompts: int
    base_perplexity: float
    tuned_perplexity: float
    by_category: dict[str, dict[str, float]] = field(default_factory=dict)
    changed_examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def perplexity_increase(self) -> float:
        return self.tuned_perplexity / self.base_perplexity - 1

    def verdict(self) -> str:
        """'little', 'some' or 'strong' forgetting, by the stated thresholds."""
        if (
            self.kl >= STRONG["kl"]
            or self.unchanged < STRONG["unchanged"]
            or self.perplexity_increase >= STRONG["perplexity_increase"]
        ):
            return "strong"
        if (
            self.kl < LITTLE["kl"]
            and self.unchanged >= LITTLE["unchanged"]
            and self.perplexity_increase <= LITTLE["perplexity_increase"]
        ):
            return "little"
        return "some"

    def summary(self) -> str:
        """The one-line verdict with its numbers and thresholds (eval.json, the model card, the CLI)."""
        return (
            f"KL {self.kl:.3f} nats/token, {self.unchanged:.0%} of {self.prompts} general answers unchanged, "
            f"general perplexity {self.base_perplexity:.2f} -> {self.tuned_perplexity:.2f} "
            f"({self.perplexity_increase:+.1%}): {self.verdict()} forgetting ({THRESHOLDS_TEXT})"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["perplexity_increase"] = self.perplexity_increase
        data["verdict"] = self.verdict()
        data["summary"] = self.summary()
        data["thresholds"] = {"little": LITTLE, "strong": STRONG}
        return data

    def training_metrics(self) -> dict[str, float]:
        """What `eval_forgetting: true` adds to each evaluation's metrics."""
        return {
            "eval_forgetting_kl": self.kl,
            "eval_forgetting_unchanged": self.unchanged,
            "eval_forgetting_logprob_delta": self.logprob_delta,
            "eval_general_perplexity": self.tuned_perplexity,
            "eval_general_perplexity_base": self.base_perplexity,
        }


THRESHOLDS_TEXT = (
    f"little: KL < {LITTLE['kl']}, >= {LITTLE['unchanged']:.0%} unchanged, perplexity "
    f"<= +{LITTLE['perplexity_increase']:.0%}; strong: KL >= {STRONG['kl']}, < {STRONG['unchanged']:.0%} "
    f"unchanged or perplexity >= +{STRONG['perplexity_increase']:.0%}"
)


def measure_forgetting(
    probe: Probe,
    tuned: Forward,
    base: Forward,
    pad_id: int,
    batch_size: int,
    progress: Progress,
) -> ForgettingResult:
    """Both models on the probe: KL, log-likelihoods and unchanged answers, then general perplexity."""
    overall = Totals()
    by_category: dict[str, Totals] = {}
    changed: list[dict[str, str]] = []
    rows = probe.rows
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        per_row = compare_batch(batch, tuned, base, pad_id)
        for offset, totals in enumerate(per_row):
            prompt = probe.prompts[start + offset]
            overall.add(totals)
            by_category.setdefault(prompt.category, Totals()).add(totals)
            if not totals.unchanged and len(changed) < CHANGED_SHOWN:
                changed.append(
                    {"id": prompt.id, "prompt": prompt.prompt, "base": probe.answers[start + offset]}
                )
        progress("forgetting: general prompts", min(start + batch_size, len(rows)), len(rows))
    base_nll, tuned_nll = text_nll(probe.texts, tuned, base, pad_id, batch_size, progress)
    means = overall.means()
    return ForgettingResult(
        kl=means["kl"],
        base_logprob=means["base_logprob"],
        tuned_logprob=means["tuned_logprob"],
        logprob_delta=means["logprob_delta"],
        unchanged=means["unchanged"],
        prompts=int(means["prompts"]),
        base_perplexity=_exp(base_nll),
        tuned_perplexity=_exp(tuned_nll),
        by_category={name: totals.means() for name, totals in by_category.items()},
        changed_examples=changed,
    )


CHANGED_SHOWN = 5


def compare_batch(batch: list[Encoded], tuned: Forward, base: Forward, pad_id: int) -> list[Totals]:
    """Per row of the batch: KL and log-likelihood sums over its answer positions, unchanged or not."""
    import torch

    ids, labels, mask = _padded(batch, pad_id)
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    base_logp = _answer_logprobs(base(ids, mask), answer)
    tuned_logp = _answer_logprobs(tuned(ids, mask), answer)
    kl = (base_logp.exp() * (base_logp - tuned_logp)).sum(-1)
    chosen = targets[answer].unsqueeze(-1).to(kl.device)
    base_ll = base_logp.gather(-1, chosen).squeeze(-1)
    tuned_ll = tuned_logp.gather(-1, chosen).squeeze(-1)
    same = base_logp.argmax(-1) == tuned_logp.argmax(-1)
    row_of = torch.arange(len(batch)).unsqueeze(1).expand_as(answer)[answer].to(kl.device)
    out = []
    for row in range(len(batch)):
        mine = row_of == row
        out.append(
            Totals(
                positions=int(mine.sum()),
                kl=float(kl[mine].sum()),
                base_logprob=float(base_ll[mine].sum()),
                tuned_logprob=float(tuned_ll[mine].sum()),
                prompts=1,
                unchanged=int(bool(same[mine].all())),
            )
        )
    return out


def text_nll(
    texts: list[Encoded], tuned: Forward, base: Forward, pad_id: int, batch_size: int, progress: Progress
) -> tuple[float, float]:
    """Mean negative log-likelihood per token of the general paragraphs: (base, tuned)."""

    sums = {"base": 0.0, "tuned": 0.0}
    tokens = 0
    for start in range(0, len(texts), batch_size):
        ids, labels, mask = _padded(texts[start : start + batch_size], pad_id)
        targets = labels[:, 1:]
        counted = targets != IGNORE_INDEX
        chosen = targets[counted].unsqueeze(-1)
        for name, forward in (("base", base), ("tuned", tuned)):
            logp = _answer_logprobs(forward(ids, mask), counted)
            sums[name] -= float(logp.gather(-1, chosen.to(logp.device)).sum())
        tokens += int(counted.sum())
        progress("forgetting: general text", min(start + batch_size, len(texts)), len(texts))
    return sums["base"] / max(tokens, 1), sums["tuned"] / max(tokens, 1)


def _answer_logprobs(logits: Any, positions: Any) -> Any:
    """Log-probabilities (float32) of the next token at the marked positions: [positions, vocab]."""
    import torch

    return torch.log_softmax(logits[:, :-1][positions.to(logits.device)].float(), dim=-1)


def _padded(rows: list[Encoded], pad_id: int) -> tuple[Any, Any, Any]:
    return pad_batch([r.input_ids for r in rows], [r.labels for r in rows], pad_id)


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def model_forward(model: Any) -> Forward:
    """The logits of a model (a soft prompt's virtual positions left out), without gradients."""
    import torch

    from ft.models.adapter import text_logits

    device = next(model.parameters()).device

    def forward(ids: Any, mask: Any) -> Any:
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        return text_logits(logits, ids.shape[1])

    return forward


def adapter_off_forward(model: Any) -> Forward:
    """The base model's logits from a peft model: the same weights with the adapter switched off."""
    forward = model_forward(model)

    def base(ids: Any, mask: Any) -> Any:
        with model.disable_adapter():
            return forward(ids, mask)

    return base


# ---------------------------------------------------------------------------------------------
# During training (`eval_forgetting: true`)


class ForgettingProbe:
    """Forgetting at each evaluation of `ft train`. The CLI builds it and hands it to the runner
    (a training stage cannot import inference). `start` takes the run's settings; the base's
    answers are made at the first evaluation, when the trainer has put the model on its device."""

    def __init__(self, settings: ForgettingSettings | None = None) -> None:
        self.settings = settings or ForgettingSettings()
        self.run: tuple[FtConfig, Any, str, Precision] | None = None
        self.probe: Probe | None = None
        self.base_forward: Forward | None = None
        self.last: ForgettingResult | None = None
        self.pad_id = 0

    def start(self, cfg: FtConfig, model: Any, tokenizer: Any, base_path: str, precision: Precision) -> str:
        self.run = (cfg, tokenizer, base_path, precision)
        self.pad_id = int(tokenizer.pad_token_id)  # ft's tokenizer always has one (choose_pad_token)
        count = len(general_prompts(self.settings.limit))
        return (
            f"eval_forgetting: {count} general prompts and ft's general text measured against the base "
            f"at each evaluation (the base's answers are cached in {forgetting_cache_dir()})"
        )

    def measure(self, model: Any) -> dict[str, float]:
        with _evaluating(model):
            probe, base_forward = self._prepared(model)
            self.last = measure_forgetting(
                probe, model_forward(model), base_forward, self.pad_id, self.settings.batch_size, _no_progress
            )
        return self.last.training_metrics()

    def _prepared(self, model: Any) -> tuple[Probe, Forward]:
        """The probe and the base's forward, made once: the base's answers (generated or cached)."""
        if self.probe is not None and self.base_forward is not None:
            return self.probe, self.base_forward
        if self.run is None:
            raise RuntimeError("ForgettingProbe.measure before start")
        from ft.infer.loading import loaded_for_model
        from ft.models.precision import quantization_info

        cfg, tokenizer, base_path, precision = self.run
        loaded = loaded_for_model(cfg, tokenizer, model)
        identity = base_identity(base_path, quantization_info(cfg, precision))
        cache = forgetting_cache_dir()
        if cfg.adapter is not None:
            self.base_forward = adapter_off_forward(model)
            with model.disable_adapter():
                self.probe = build_probe(loaded, model, identity, self.settings, cache, _no_progress)
        else:  # a full fine-tune changes the weights themselves: a frozen copy of the base
            base = _frozen_base(cfg, base_path, tokenizer, precision, model)
            self.base_forward = model_forward(base)
            self.probe = build_probe(loaded, base, identity, self.settings, cache, _no_progress)
        return self.probe, self.base_forward

    def summary(self) -> str | None:
        return f"forgetting at the last evaluation: {self.last.summary()}" if self.last else None


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    """Evaluation mode (no dropout) for the measurement, then the mode the trainer had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _frozen_base(cfg: FtConfig, base_path: str, tokenizer: Any, precision: Precision, model: Any) -> Any:
    from ft.models.loading import load_model_from_path

    base = load_model_from_path(cfg, base_path, tokenizer, precision, quantize=False)
    base.requires_grad_(False)
    return base.to(next(model.parameters()).device).eval()
