"""Per-dataset `weight`: exact counts, seeded samples, applied after the eval split, reported by
`ft train` (run.json, the summary) and `ft format --stats`."""

from __future__ import annotations

from pathlib import Path

from ft.data.pipeline import mix_lines, prepare_data, preview_examples, summary_lines
from test_data import config, write_jsonl
from test_format_cli import run


def two_datasets(tmp_path: Path, task_weight: float, general_weight: float) -> list[dict]:
    task = write_jsonl(
        tmp_path / "task.jsonl", [{"instruction": f"Task {i}?", "output": f"t{i}"} for i in range(40)]
    )
    general = write_jsonl(
        tmp_path / "general.jsonl", [{"instruction": f"General {i}?", "output": f"g{i}"} for i in range(30)]
    )
    return [
        {"path": str(task), "type": "alpaca", "weight": task_weight},
        {"path": str(general), "type": "alpaca", "weight": general_weight},
    ]


def outputs(tokenizer, dataset) -> list[str]:
    from ft.data.tokens import IGNORE_INDEX

    return [
        tokenizer.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=True)
        for labels in dataset["labels"]
    ]


def test_weights_repeat_or_sample_rows_exactly(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = config(tmp_path, tiny_model_dir, two_datasets(tmp_path, 2.5, 0.1))
    prepared = prepare_data(cfg, tiny_tokenizer, use_cache=False)
    answers = outputs(tiny_tokenizer, prepared.train)
    task = [a for a in answers if a.startswith("t")]
    general = [a for a in answers if a.startswith("g")]
    assert len(task) == 100 and len(general) == 3  # 40 x 2.5 and 30 x 0.1
    counts = {a: task.count(a) for a in set(task)}
    assert sorted(set(counts.values())) == [2, 3] and sum(v == 3 for v in counts.values()) == 20
    assert prepared.report.counts()["mix"] == [
        {"key": "datasets[0]", "path": str(tmp_path / "task.jsonl"), "rows": 40, "weight": 2.5, "used": 100},
        {"key": "datasets[1]", "path": str(tmp_path / "general.jsonl"), "rows": 30, "weight": 0.1, "used": 3},
    ]
    assert "  datasets[1] " + str(tmp_path / "general.jsonl") + ": 30 rows x 0.1 = 3 (2.9%)" in summary_lines(
        prepared.report
    )
    again = prepare_data(cfg, tiny_tokenizer, use_cache=False)
    assert outputs(tiny_tokenizer, again.train) == answers  # seeded


def test_weights_apply_after_the_eval_split(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = config(tmp_path, tiny_model_dir, two_datasets(tmp_path, 3, 1), val_set_size=10)
    prepared = prepare_data(cfg, tiny_tokenizer, use_cache=False)
    held_out = set(outputs(tiny_tokenizer, prepared.eval))
    assert len(held_out) == 10 and not held_out & set(outputs(tiny_tokenizer, prepared.train))
    mix = {line.key: (line.rows, line.used) for line in prepared.report.mix}
    assert sum(rows for rows, _ in mix.values()) == 60 and len(prepared.train) == sum(
        u for _, u in mix.values()
    )
    assert mix["datasets[0]"][1] == 3 * mix["datasets[0]"][0]


def test_cached_data_keeps_the_mix_report(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = config(
        tmp_path, tiny_model_dir, two_datasets(tmp_path, 1, 0.5), dataset_prepared_path=str(tmp_path / "c")
    )
    first = prepare_data(cfg, tiny_tokenizer)
    cached = prepare_data(cfg, tiny_tokenizer)
    assert cached.report.from_cache and cached.report.mix == first.report.mix
    assert mix_lines(cached.report.mix)[1].endswith("30 rows x 0.5 = 15 (27.3%)")


def test_unweighted_data_is_unchanged_and_reports_no_mix(tmp_path, tiny_model_dir, tiny_tokenizer):
    datasets = two_datasets(tmp_path, 1, 1)
    cfg = config(tmp_path, tiny_model_dir, datasets)
    prepared = prepare_data(cfg, tiny_tokenizer, use_cache=False)
    assert len(prepared.train) == 70 and "mix" not in prepared.report.counts()
    examples, report = preview_examples(cfg, tiny_tokenizer, None)
    assert len(examples) == 70 and [line.used for line in report.mix] == [40, 30]


def test_format_stats_reports_the_mix(tmp_path, tiny_model_dir):
    import yaml

    path = tmp_path / "mix.yml"
    datasets = two_datasets(tmp_path, 1, 0.2)
    path.write_text(yaml.safe_dump({"base_model": str(tiny_model_dir), "datasets": datasets}))
    result = run("format", str(path), "--stats")
    assert result.exit_code == 0, result.output
    assert "training mix by dataset weight:" in result.stdout
    assert "datasets[0] " + str(tmp_path / "task.jsonl") + ": 40 rows x 1 = 40 (87.0%)" in result.stdout
    assert ": 30 rows x 0.2 = 6 (13.0%)" in result.stdout
    assert "rows 46 of 70 read" in result.stdout
