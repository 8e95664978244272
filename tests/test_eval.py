"""`ft eval` on a tiny trained run: eval.json, the loss the trainer reported, base vs tuned."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from ft.data.prompts import Segment
from test_infer import invoke, trained_run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return trained_run(tmp_path_factory, tiny_model_dir)


def test_eval_with_base_comparison(run_dir: Path) -> None:
    result = invoke("eval", str(run_dir), "--compare-base", "--max-new-tokens", "8")
    report = json.loads((run_dir / "eval.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())

    assert report["rows"] == report["generated_rows"] == 4
    # The split is prepared as in training and one eval batch holds it: the trainer's number.
    assert report["loss"] == pytest.approx(run["final_eval_loss"], abs=1e-4)
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]))
    metrics = {"rouge1", "rouge2", "rougeL", "bleu", "exact_match", "rows"}
    for name in ("tuned", "base"):
        assert set(report[name]["metrics"]) == metrics
        assert report[name]["perplexity"] == pytest.approx(math.exp(report[name]["loss"]))
    # Trained on the rows it is evaluated on (the tiny data repeats): the adapter lowers the loss.
    assert report["tuned"]["loss"] < report["base"]["loss"]
    assert report["base"]["loss"] != report["tuned"]["loss"]

    header = next(line for line in result.stdout.splitlines() if "metric" in line)
    assert header.index("base") < header.index("tuned")
    assert "ROUGE-L" in result.stdout and "BLEU" in result.stdout and "exact match" in result.stdout
    sample = report["samples"][0]
    assert set(sample) == {"prompt", "reference", "tuned", "base"}
    assert sample["prompt"].endswith("### Response:\n") and "</s>" not in sample["reference"]


def test_eval_from_the_config_with_a_limit(run_dir: Path) -> None:
    config = run_dir.parent / "run.yml"
    result = invoke("eval", str(config), "--limit", "2", "--max-new-tokens", "4")
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["rows"] == 2 and len(report["samples"]) == 2
    assert "base" not in report and report["metrics"]["rows"] == 2
    header = next(line for line in result.stdout.splitlines() if "metric" in line)
    assert "tuned" in header and "base" not in header


def test_eval_without_a_held_out_split_fails_before_loading(run_dir: Path, tmp_path: Path) -> None:
    from ft.base.errors import FtError
    from ft.infer.evaluate import EvalSettings, run_eval

    data = yaml.safe_load((run_dir / "config.yml").read_text())
    data["val_set_size"] = 0
    config = tmp_path / "no-split.yml"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(FtError, match="no held-out split"):
        run_eval(config, EvalSettings())


def test_held_out_row_cuts_at_the_first_trained_segment() -> None:
    from ft.infer.evaluate import held_out_row

    segments = [
        Segment("<s>", special="bos"),
        Segment("### Instruction:\nHi\n\n### Response:\n"),
        Segment("Hello there", trained=True),
        Segment("</s>", trained=True, special="eos"),
        Segment("### Instruction:\nMore\n\n### Response:\n"),
        Segment("Later", trained=True),
    ]
    row = held_out_row(segments, "</s>")
    assert row is not None
    assert row.prompt == segments[:2] and row.reference == "Hello there"
    # A tokenizer chat template writes the terminator inside the answer text; llama2 pads with spaces.
    template = [Segment("[INST] Hi [/INST]"), Segment(" Hello </s>", trained=True)]
    assert held_out_row(template, "</s>").reference == "Hello"  # type: ignore[union-attr]
    # Completion text is trained whole: no prompt to answer.
    assert held_out_row([Segment("<s>", special="bos"), Segment("text", trained=True)], "</s>") is None


def test_eval_generates_in_batches_within_a_budget_from_the_references(run_dir: Path) -> None:
    one = invoke("eval", str(run_dir), "--batch-size", "1")
    alone = json.loads((run_dir / "eval.json").read_text())
    many = invoke("eval", str(run_dir), "--batch-size", "4")
    batched = json.loads((run_dir / "eval.json").read_text())
    assert [s["tuned"] for s in batched["samples"]] == [s["tuned"] for s in alone["samples"]]
    assert batched["loss"] == pytest.approx(alone["loss"], abs=1e-5)
    # Answers get twice the longest reference's tokens (+1), not minutes of rambling.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    longest = max(
        len(tokenizer(s["reference"], add_special_tokens=False)["input_ids"]) for s in alone["samples"]
    )
    assert alone["max_new_tokens"] == max(16, 2 * longest + 1) < 128
    assert f"max_new_tokens {alone['max_new_tokens']}: twice the longest reference answer" in one.stdout
    # Not a terminal (captured): plain progress lines, and what loads.
    assert "generate tuned: 4/4 (100%)" in many.stdout and "loss tuned: 4/4 (100%)" in many.stdout
    assert "loaded in" in many.stdout
