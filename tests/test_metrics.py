"""Generation metrics on known strings."""

from __future__ import annotations

import math

import pytest

from ft.data.metrics import bleu, exact_match, rouge, score_generations


def test_identical_texts_score_full_marks() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    assert rouge(text, text) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert bleu([text], [text]) == pytest.approx(100.0)
    assert exact_match(text, text) == 1.0


def test_short_identical_answers_are_not_zero_bleu() -> None:
    # Without effective order, BLEU of a two-token answer is 0 for lack of 3- and 4-grams.
    assert bleu(["Paris."], ["Paris."]) == pytest.approx(100.0)
    assert bleu(["2024-01-05"], ["2024-01-05"]) == pytest.approx(100.0)


def test_disjoint_texts_score_zero() -> None:
    assert rouge("alpha beta gamma", "delta epsilon zeta") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert bleu(["alpha beta gamma"], ["delta epsilon zeta"]) == 0.0
    assert exact_match("alpha", "delta") == 0.0


def test_known_partial_overlap() -> None:
    prediction, reference = "the cat sat on a mat", "the cat sat on the mat"
    scores = rouge(prediction, reference)
    # 5 of 6 unigrams shared (F = 5/6); 3 of 5 bigrams (the cat, cat sat, sat on); LCS 5 tokens.
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)
    # n-gram precisions 5/6, 3/5, 2/4 (the cat sat, cat sat on), 1/3 (the cat sat on); same
    # length, so no brevity penalty: BLEU is their geometric mean.
    expected = 100 * math.exp(sum(map(math.log, (5 / 6, 3 / 5, 2 / 4, 1 / 3))) / 4)
    assert bleu([prediction], [reference]) == pytest.approx(expected, abs=0.01)


def test_exact_match_ignores_surrounding_whitespace_only() -> None:
    assert exact_match("  Paris.\n", "Paris.") == 1.0
    assert exact_match("paris.", "Paris.") == 0.0


def test_score_generations_averages_rows() -> None:
    scores = score_generations(["Paris.", "alpha beta"], ["Paris.", "gamma delta"])
    assert scores.rows == 2
    assert scores.exact_match == 0.5
    assert scores.rouge1 == pytest.approx(0.5)
    assert 0 < scores.bleu < 100
    assert set(scores.to_json()) == {"rouge1", "rouge2", "rougeL", "bleu", "exact_match", "rows"}


def test_empty_and_mismatched_inputs() -> None:
    assert score_generations([], []).rows == 0
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score_generations(["a", "b"], ["a"])
