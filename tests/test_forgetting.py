"""Forgetting, measured: ft's general sets, the arithmetic of KL / log-likelihood / unchanged answers
on hand-made logits, the verdict, and `ft eval --forgetting` and `eval_forgetting` on tiny runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ft.data.tokens import IGNORE_INDEX, Encoded
from ft.infer.forgetting import (
    LITTLE,
    STRONG,
    ForgettingResult,
    ForgettingSettings,
    Probe,
    compare_batch,
    general_prompts,
    general_texts,
    measure_forgetting,
)


def test_general_prompts_are_many_varied_and_hold_no_task_data() -> None:
    prompts = general_prompts()
    assert len(prompts) >= 200
    assert len({p.id for p in prompts}) == len({p.prompt for p in prompts}) == len(prompts)
    categories = {p.category for p in prompts}
    assert categories == {"facts", "arithmetic", "writing", "code", "instructions", "languages"}
    assert len({p.language for p in prompts} - {"en"}) >= 5
    # The quickstart's task (dates to ISO 8601) must not leak into the probe.
    assert not [p.prompt for p in prompts if "ISO" in p.prompt or "YYYY" in p.prompt]
    replay = (Path(__file__).parent.parent / "examples" / "general_prompts.txt").read_text().splitlines()
    assert not {p.prompt for p in prompts} & set(replay)  # mixing data is not the test set


def test_general_text_is_shipped() -> None:
    texts = general_texts()
    assert len(texts) >= 20 and all(len(t.split()) >= 40 for t in texts)


def result(kl: float, unchanged: float, base_ppl: float = 10.0, tuned_ppl: float = 10.0) -> ForgettingResult:
    return ForgettingResult(kl, -1.0, -1.0 - kl, -kl, unchanged, 222, base_ppl, tuned_ppl)


def test_verdict_thresholds() -> None:
    assert result(0.01, 0.95).verdict() == "little"
    assert result(LITTLE["kl"], 0.95).verdict() == "some"  # the bound itself is not little
    assert result(0.01, 0.70).verdict() == "some"
    assert result(0.01, 0.95, 10.0, 10.6).verdict() == "some"  # perplexity +6%
    assert result(STRONG["kl"], 0.95).verdict() == "strong"
    assert result(0.01, 0.20).verdict() == "strong"
    assert result(0.01, 0.95, 10.0, 15.0).verdict() == "strong"
    line = result(0.021, 0.96, 12.3, 12.5).summary()
    assert line.startswith(
        "KL 0.021 nats/token, 96% of 222 general answers unchanged, general perplexity 12.30"
    )
    assert "little forgetting (little: KL < 0.05, >= 80% unchanged" in line
    data = result(0.021, 0.96).to_json()
    assert data["verdict"] == "little" and data["thresholds"] == {"little": LITTLE, "strong": STRONG}


def logits_for(rows: int, length: int, vocab: int, peaks: list[list[int]]):
    """Logits with a clear argmax: 5.0 at peaks[row][position], 0 elsewhere."""
    import torch

    logits = torch.zeros(rows, length, vocab)
    for row, positions in enumerate(peaks):
        for position, token in enumerate(positions):
            logits[row, position, token] = 5.0
    return logits


def test_compare_batch_counts_kl_likelihood_and_changed_answers() -> None:
    import torch

    # Two rows: prompt tokens masked, answer tokens labelled; row 1 has a shorter answer.
    batch = [
        Encoded([1, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, 3, 4]),
        Encoded([1, 2, 5], [IGNORE_INDEX, IGNORE_INDEX, 5]),
    ]
    base_peaks = [[0, 3, 4, 0], [0, 5, 0, 0]]
    tuned_peaks = [[0, 3, 6, 0], [0, 5, 0, 0]]  # row 0 changes its choice at its last answer token
    base_logits = logits_for(2, 4, 8, base_peaks)
    tuned_logits = logits_for(2, 4, 8, tuned_peaks)
    totals = compare_batch(batch, lambda ids, mask: tuned_logits, lambda ids, mask: base_logits, pad_id=0)

    assert [t.positions for t in totals] == [2, 1]
    assert [t.unchanged for t in totals] == [0, 1]
    # Row 0, position 2: base puts 5.0 on token 4, tuned on token 6: KL by hand.
    base_p = torch.softmax(base_logits[0, 2], -1)
    expected = float((base_p * (base_p.log() - torch.log_softmax(tuned_logits[0, 2], -1))).sum())
    assert totals[0].kl == pytest.approx(expected, rel=1e-5) and expected > 0.1
    assert totals[1].kl == pytest.approx(0.0, abs=1e-6)
    # Log-likelihood of the base's tokens: the tuned model lost it at the changed position.
    assert totals[0].tuned_logprob < totals[0].base_logprob
    assert totals[1].tuned_logprob == pytest.approx(totals[1].base_logprob)


def test_the_same_model_twice_is_no_forgetting() -> None:
    import torch

    torch.manual_seed(0)
    table = torch.randn(16, 16)

    def forward(ids, mask):  # a bigram model: logits depend on the current token only
        return table[ids]

    rows = [Encoded([1, 2, 3, 4, 5], [IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5]) for _ in range(3)]
    probe = Probe(general_prompts(3), ["a", "b", "c"], rows, rows[:2])
    same = measure_forgetting(probe, forward, forward, 0, 2, lambda *a: None)
    assert same.kl == pytest.approx(0.0, abs=1e-6) and same.unchanged == 1.0
    assert same.logprob_delta == pytest.approx(0.0, abs=1e-6)
    assert same.base_perplexity == pytest.approx(same.tuned_perplexity)
    assert same.verdict() == "little" and same.changed_examples == []

    other = table.clone()
    other[:, 0] += 10.0  # the tuned model now always prefers token 0

    def drifted(ids, mask):
        return other[ids]

    moved = measure_forgetting(probe, drifted, forward, 0, 2, lambda *a: None)
    assert moved.kl > 1.0 and moved.unchanged == 0.0 and moved.verdict() == "strong"
    assert moved.tuned_perplexity > moved.base_perplexity
    assert [e["id"] for e in moved.changed_examples] == [p.id for p in probe.prompts]
    assert set(moved.by_category) == {"facts"} and moved.by_category["facts"]["prompts"] == 3


# ---------------------------------------------------------------------------------------------
# On tiny runs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from test_infer import trained_run

    return trained_run(tmp_path_factory, tiny_model_dir)


@pytest.mark.integration
def test_base_answers_in_batches_equal_one_prompt_at_a_time(run_dir: Path) -> None:
    """The base's answers are generated left-padded in batches: greedy, they must be the answers
    one prompt at a time (prompts of different lengths, a last batch that is not full)."""
    from ft.infer.forgetting import answer_prompts, prompt_ids
    from ft.infer.generate import GenerationSettings, generate_from_ids
    from ft.infer.loading import load_for_inference

    loaded = load_for_inference(run_dir)
    ids = prompt_ids(loaded, general_prompts(12))
    assert len({len(prompt) for prompt in ids}) >= 6
    settings = ForgettingSettings(max_new_tokens=24, generation_batch_size=5)
    done: list[tuple[str, int, int]] = []
    with loaded.model.disable_adapter():  # the base, as ft eval --forgetting uses it
        batched = answer_prompts(loaded.model, loaded, ids, settings, lambda *step: done.append(step))
        greedy = GenerationSettings(max_new_tokens=24)
        alone = [generate_from_ids(loaded.model, loaded, prompt, greedy) for prompt in ids]
    assert batched == alone and len(set(alone)) > 1
    assert done == [("forgetting: base answers", n, 12) for n in (5, 10, 12)]


@pytest.mark.integration
def test_eval_forgetting_writes_eval_json_and_caches_the_base_answers(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from ft.cli.infer import show_eval
    from ft.infer.evaluate import EvalSettings, run_eval

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    settings = EvalSettings(max_new_tokens=4, forgetting=True, forgetting_limit=6)
    report = run_eval(run_dir, settings)
    saved = json.loads((run_dir / "eval.json").read_text())["forgetting"]
    assert saved["prompts"] == 6 and saved["verdict"] in ("little", "some", "strong")
    assert report.forgetting is not None and saved["summary"] == report.forgetting.summary()
    card = (run_dir / "README.md").read_text()  # ft eval writes the model card again
    assert f"- forgetting (`ft eval --forgetting`, general prompts and text): {saved['summary']}" in card
    # Trained at lr 0.01 on other rows: the adapter moved the distributions, a little.
    assert 0 < saved["kl"] < 10 and math.isfinite(saved["tuned_perplexity"])
    cached = list((tmp_path / "cache" / "forgetting").glob("*.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())["answers"]) == 6

    # Cached: a second run generates nothing and gives the same numbers.
    stages: list[str] = []
    again = run_eval(run_dir, settings, lambda stage, done, total: stages.append(stage))
    assert "forgetting: base answers" not in stages and "forgetting: general prompts" in stages
    assert again.forgetting is not None and again.forgetting.kl == pytest.approx(saved["kl"], rel=1e-5)
    console = Console(record=True, width=300)
    show_eval(console, again)
    shown = console.export_text()
    assert "verdict: KL" in shown and "general-text perplexity: base" in shown and "facts" in shown


@pytest.mark.integration
def test_eval_forgetting_of_a_full_finetune_loads_the_base_beside_it(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ft.infer.evaluate import EvalSettings, run_eval
    from test_train import run_cli, write_config

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    full = {"adapter": None, "lora_r": None, "lora_alpha": None, "lora_target_linear": None}
    config = write_config(tmp_path, tiny_model_dir, val_set_size=2, max_steps=4, learning_rate=0.05, **full)
    assert run_cli("train", str(config)) == 0
    report = run_eval(tmp_path / "run", EvalSettings(max_new_tokens=4, forgetting=True, forgetting_limit=4))
    assert report.forgetting is not None
    # Every weight moved at lr 0.05: clearly more than the numerical noise of an identical model.
    assert (
        report.forgetting.kl > 1e-3
        and report.forgetting.tuned_perplexity != report.forgetting.base_perplexity
    )


@pytest.mark.integration
def test_eval_forgetting_during_training_logs_a_curve(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ft.base.errors import FtError
    from ft.config.load import load_config
    from ft.infer.forgetting import ForgettingProbe
    from ft.train.runner import run_training
    from test_train import write_config

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    config = write_config(
        tmp_path, tiny_model_dir, val_set_size=2, eval_steps=2, max_steps=4, eval_forgetting=True
    )
    cfg = load_config(config)
    with pytest.raises(FtError, match="eval_forgetting: true needs the forgetting probe"):
        run_training(cfg)
    probe = ForgettingProbe(ForgettingSettings(max_new_tokens=4, limit=4))
    result = run_training(cfg, eval_probes=[probe])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [row for row in rows if "eval_loss" in row]
    assert [row["step"] for row in evals] == [2, 4]
    assert all(row["eval_forgetting_unchanged"] <= 1 for row in evals)
    kls = [row["eval_forgetting_kl"] for row in evals]
    assert 0 < kls[0] < kls[1]  # the adapter moves further from the base as it trains
    assert all(
        row["eval_general_perplexity_base"] == evals[0]["eval_general_perplexity_base"] for row in evals
    )
    assert any(note.startswith("forgetting at the last evaluation: KL") for note in result.notes)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0


def test_eval_forgetting_needs_an_eval_split_and_one_process() -> None:
    from ft.config.schema import rule_problems

    base = {"base_model": "m", "datasets": [{"path": "d.jsonl"}], "eval_forgetting": True}
    assert rule_problems(base, complete=False) == [
        "eval_forgetting: runs at each evaluation: set val_set_size or test_datasets (an eval split)"
    ]
    sharded = rule_problems({**base, "val_set_size": 0.1, "fsdp": ["full_shard"]}, complete=False)
    assert len(sharded) == 1 and "ft eval RUN --forgetting" in sharded[0]
