"""`ft format` and `ft preprocess` through the CLI (typer's CliRunner, in process)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ft.cli.app import app

ROWS = [
    {"instruction": "What is 2 + 2?", "output": "4"},
    {"instruction": "Say hi.", "output": "hi"},
    {"instruction": "Bad row"},
]


def write_config(tmp_path: Path, model_dir: Path, **keys: object) -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = {
        "base_model": str(model_dir),
        "datasets": [{"path": str(data), "type": "phi2"}],
        "sequence_len": 64,
        **keys,
    }
    path = tmp_path / "ft.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


def test_format_json_is_the_trained_text(tmp_path, tiny_model_dir):
    result = run("format", str(write_config(tmp_path, tiny_model_dir)), "--json", "-n", "2", "--tokens")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["prompt"], r["completion"]) for r in lines] == [
        ("<s>Instruct: What is 2 + 2?\nOutput:", " 4</s>"),
        ("<s>Instruct: Say hi.\nOutput:", " hi</s>"),
    ]
    assert lines[0]["text"] == "<s>Instruct: What is 2 + 2?\nOutput: 4</s>"
    assert len(lines[0]["input_ids"]) == len(lines[0]["labels"])
    assert lines[0]["labels"][-1] == lines[0]["input_ids"][-1]  # EOS trained


def test_format_human_view_shows_whitespace_counts_and_bad_rows(tmp_path, tiny_model_dir):
    result = run("format", str(write_config(tmp_path, tiny_model_dir)), "-n", "3")
    assert result.exit_code == 0, result.output
    assert "example 1 · datasets[0] line 1 ·" in result.output
    assert "Instruct: What is 2 + 2?↵" in result.output
    assert "tokens, 3 trained" in result.output
    assert "1 bad row(s): training would stop on them" in result.output
    assert "line 3: missing field 'output'" in result.output


def test_format_stats_reports_lengths_and_packing(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir, sample_packing=True)
    result = run("format", str(config), "--stats")
    assert result.exit_code == 0, result.output
    assert "whole training set" in result.output
    assert "rows 2 of 3 read" in result.output
    assert "packing: 2 rows in 1 sequences" in result.output


def test_preprocess_writes_once_then_reuses(tmp_path, tiny_model_dir):
    config = write_config(
        tmp_path, tiny_model_dir, skip_invalid_rows=True, dataset_prepared_path=str(tmp_path / "p")
    )
    first = run("preprocess", str(config))
    assert first.exit_code == 0, first.output
    assert ": written" in first.output and "bad rows skipped: 1" in first.output
    # Each stage a plain line with the time so far (the output is not a terminal).
    assert "s  rendering, tokenizing and masking 3 rows" in first.output
    assert "s  saving the prepared data in" in first.output
    second = run("preprocess", str(config))
    assert "up to date (cached)" in second.output
    assert len([p for p in (tmp_path / "p").iterdir() if p.is_dir()]) == 1


def test_preprocess_fails_on_bad_rows_with_exit_2(tmp_path, tiny_model_dir):
    from ft.base.errors import DataError

    result = run("preprocess", str(write_config(tmp_path, tiny_model_dir)))
    assert isinstance(result.exception, DataError)  # the CLI's main() turns it into exit code 2


def test_format_marks_trained_text_in_plain_text_without_colour(tmp_path, tiny_model_dir):
    """NO_COLOR (or a pipe): brackets around what is trained, a legend, and the token cells marked."""
    result = run("format", str(write_config(tmp_path, tiny_model_dir)), "-n", "1", "--tokens")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("legend: ⟦trained⟧, masked (not trained) unmarked")
    assert "Output:⟦·4</s>⟧" in result.output  # the answer, its boundary space and EOS are trained
    token_line = next(line for line in lines if line.startswith("0:<s> "))
    assert token_line.endswith("⟦1:</s>⟧") and token_line.count("⟦") == 3


def test_format_in_colour_carries_the_same_marks_as_colours(tmp_path, tiny_model_dir):
    config = str(write_config(tmp_path, tiny_model_dir))
    result = CliRunner().invoke(
        app, ["format", config, "-n", "1"], env={"FORCE_COLOR": "1", "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.output and "⟦" not in result.output
    assert "legend:" in result.output and "trained" in result.output


def test_spaces_that_would_not_show_are_made_visible() -> None:
    from ft.cli.preview import visible_segments

    assert visible_segments(["a  b c ", "\n d"]) == ["a··b c·", "↵\n·d"]
    assert visible_segments(["Output:", " 4"]) == ["Output:", "·4"]  # a segment's opening space
    assert visible_segments(["x\ty "]) == ["x→y·"]


def test_stats_with_count_and_json_keep_both(tmp_path, tiny_model_dir):
    config = str(write_config(tmp_path, tiny_model_dir))
    both = run("format", config, "--stats", "-n", "1")
    assert "example 1 ·" in both.output and "example 2 ·" not in both.output
    assert "whole training set" in both.output and "rows 2 of 3 read" in both.output
    lines = run("format", config, "--stats", "--json", "-n", "1").stdout.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == 2 and "prompt" in records[0]
    assert records[1]["stats"]["scope"] == "whole training set" and records[1]["stats"]["train"]["rows"] == 2
    only_stats = [json.loads(line) for line in run("format", config, "--stats", "--json").stdout.splitlines()]
    assert [list(record) for record in only_stats] == [["stats"]]
