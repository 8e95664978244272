"""Generation metrics: ROUGE-1/2/L (rouge_score), BLEU, chrF and TER (sacrebleu), exact match. Pure
functions, used by `ft eval` and by evaluations during training (eval_causal_lm_metrics).

ROUGE is the F-measure averaged over rows (Lin 2004, as `rouge_score` computes it: lower-cased,
alphanumeric tokens, no stemming). BLEU is corpus-level (Papineni et al. 2002, sacrebleu's
standard 13a tokenization) with `effective_order`: fine-tuning answers are often shorter than four
tokens (a date, a label), and plain BLEU scores any text without a 4-gram 0 even when it matches.
Exact match compares the texts after stripping surrounding whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class GenerationScores:
    """Metrics over a set of generations, each in [0, 1] except BLEU in [0, 100]."""

    rouge1: float
    rouge2: float
    rougeL: float  # the metric's usual name
    bleu: float
    exact_match: float
    rows: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the texts are equal after stripping surrounding whitespace, else 0.0."""
    return 1.0 if prediction.strip() == reference.strip() else 0.0


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures of one prediction against its reference."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
    scores = scorer.score(reference, prediction)  # rouge_score takes (target, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of the predictions against one reference each."""
    from sacrebleu.metrics import BLEU

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return float(BLEU(effective_order=True).corpus_score(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100, Popović 2015, sacrebleu's defaults)."""
    from sacrebleu.metrics import CHRF

    _check_lengths(predictions, references)
    return float(CHRF().corpus_score(list(predictions), [list(references)]).score) if predictions else 0.0


def ter(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus translation edit rate (lower is better, Snover et al. 2006, sacrebleu's defaults)."""
    from sacrebleu.metrics import TER

    _check_lengths(predictions, references)
    return float(TER().corpus_score(list(predictions), [list(references)]).score) if predictions else 0.0


def score_generations(predictions: Sequence[str], references: Sequence[str]) -> GenerationScores:
    """All the metrics for paired predictions and references."""
    _check_lengths(predictions, references)
    count = len(predictions)
    if count == 0:
        return GenerationScores(0.0, 0.0, 0.0, 0.0, 0.0, rows=0)
    per_row = [rouge(p, r) for p, r in zip(predictions, references, strict=True)]
    means = {name: sum(row[name] for row in per_row) / count for name in ROUGE_TYPES}
    exact = sum(exact_match(p, r) for p, r in zip(predictions, references, strict=True)) / count
    return GenerationScores(
        rouge1=means["rouge1"],
        rouge2=means["rouge2"],
        rougeL=means["rougeL"],
        bleu=bleu(predictions, references),
        exact_match=exact,
        rows=count,
    )


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
