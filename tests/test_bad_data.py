"""Broken dataset files (tests/bad_data/, plus binary and large ones built here), through
`ft preprocess`: each problem named with its file and row, exit 2 and no traceback; with
skip_invalid_rows the exact count skipped is reported and the rest is prepared. Problems that
leave nothing after them readable stay errors with skipping on.

Positions are 1-based: `line N` is the file's line (JSON lines, and where a JSON array's element
or a CSV record starts), `row N` the data row (header not counted)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ft.base.errors import DataError
from test_data import write_jsonl
from test_train import run_cli

CORPUS = Path(__file__).parent / "bad_data"
CHAT = {"type": "chat_template", "chat_template": "phi3"}


@dataclass(frozen=True)
class Case:
    file: str
    expected: tuple[str, ...]
    """Fragments of the message, each naming the row and the reason."""
    skipped: int | None
    """Rows skipped with skip_invalid_rows; None: a whole-file error, skipping or not."""
    kept: int = 0
    dataset: dict[str, object] = field(default_factory=dict)


CASES = [
    Case(
        "truncated.json",
        ("line 4: invalid JSON: Invalid control character (column 35)", "may be cut short"),
        None,
    ),
    Case(
        "cut_last_line.jsonl",
        ("line 4: invalid JSON: Unterminated string starting (column 28)", "may be cut short"),
        1,
        3,
    ),
    Case(
        "not_objects.jsonl",
        (
            "line 2: a JSON array, not an object",
            "line 3: a JSON string, not an object",
            "line 4: a JSON number, not an object",
            "line 5: a JSON null, not an object",
        ),
        4,
        2,
    ),
    Case(
        "missing_fields.jsonl",
        (
            "line 2: missing field 'output' (columns: instruction)",
            "line 3: missing field 'instruction' (columns: output)",
            "line 4: missing field 'instruction' (columns: none)",
        ),
        3,
        2,
    ),
    Case(
        "null_fields.jsonl",
        ("line 2: field 'output' is null", "line 3: field 'instruction' is null"),
        2,
        2,  # line 4: a null *input* is no input
    ),
    Case(
        "numbers.jsonl",
        (
            "line 2: field 'output' is a number (0.5), not text: quote it",
            "line 3: field 'output' is a boolean, not text",
            "line 5: field 'output' is a list, not text",
        ),
        3,
        2,  # 42 and 7 are whole numbers: trained as "42" and "7"
    ),
    Case(
        "empty_answers.jsonl",
        (
            "line 2: field 'output' is empty",
            "line 3: field 'output' is empty",
            "line 4: field 'instruction' is empty",
        ),
        3,
        1,
    ),
    Case(
        "empty_answers_chat.jsonl",
        (
            "line 2: turn 2 is an empty assistant answer",
            "line 3: no assistant turn to train on",
            "line 4: turn 2: 'content' is null",
            "line 5: field 'messages' is not a non-empty list of turns",
        ),
        4,
        1,
        CHAT,
    ),
    Case(
        "ragged.csv",
        (
            "row 2 (line 3): 4 fields, the header has 3",
            "row 3 (line 4): 2 fields, the header has 3",
            "row 6 (line 8): 1 field, the header has 3; an unclosed quote joins lines",
        ),
        3,
        3,  # rows 4 and 5: a quoted comma and a quoted line break are fine
    ),
    Case(
        "mixed_encoding.jsonl",
        ("line 2: not valid UTF-8 (byte 0xe8): re-encode the file as UTF-8",),
        1,
        2,
    ),
    Case("mixed_encoding.csv", ("line 3: not valid UTF-8 (byte 0xe8)", "re-encode the file as UTF-8"), None),
]


def write_config(tmp_path: Path, model_dir: Path, data: Path, dataset: dict, **keys: object) -> Path:
    config = {
        "base_model": str(model_dir),
        "datasets": [{"path": str(data), **dataset}],
        "sequence_len": 128,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        **keys,
    }
    path = tmp_path / "ft.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def preprocess(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`ft preprocess CONFIG` in process: exit code, stdout + stderr."""
    code = run_cli("preprocess", str(config))
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_fails_naming(code: int, output: str, data: Path, expected: tuple[str, ...]) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    assert str(data) in output.replace("\n", "")
    flat = " ".join(output.split())  # rich may wrap long lines
    for fragment in expected:
        assert " ".join(fragment.split()) in flat, fragment


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.file)
def test_bad_file_fails_with_file_and_row(case: Case, tmp_path, tiny_model_dir, capsys):
    data = CORPUS / case.file
    code, output = preprocess(write_config(tmp_path, tiny_model_dir, data, case.dataset), capsys)
    assert_fails_naming(code, output, data, case.expected)
    if case.skipped is not None:
        assert f"{case.skipped} row(s) cannot be used" in output
        assert "skip_invalid_rows" in output


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.file)
def test_bad_rows_skipped_when_allowed(case: Case, tmp_path, tiny_model_dir, capsys):
    data = CORPUS / case.file
    config = write_config(tmp_path, tiny_model_dir, data, case.dataset, skip_invalid_rows=True)
    code, output = preprocess(config, capsys)
    if case.skipped is None:  # nothing after the break can be read: still an error
        assert_fails_naming(code, output, data, case.expected)
        return
    assert code == 0, output
    assert f"bad rows skipped: {case.skipped}\n" in output
    assert f"data: {case.kept} training rows" in output
    assert " ".join(case.expected[0].split()) in " ".join(output.split())  # the skipped rows are listed


def test_whole_numbers_are_trained_as_their_digits(tmp_path, tiny_model_dir, tiny_tokenizer):
    from ft.config.load import load_config
    from ft.data.pipeline import preview_examples

    config = write_config(tmp_path, tiny_model_dir, CORPUS / "numbers.jsonl", {}, skip_invalid_rows=True)
    examples, report = preview_examples(load_config(config), tiny_tokenizer, None)
    assert [e.where for e in examples] == ["line 1", "line 4"]
    answers = [tiny_tokenizer.decode([t for t in e.labels if t != -100]) for e in examples]
    assert answers == ["42</s>", "seven</s>"]
    assert "Instruction:\n7\n" in "".join(s.text for s in examples[1].segments)
    assert len(report.bad_rows) == 3


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.mark.parametrize("skip", [False, True])
def test_parquet_with_other_columns_lists_the_columns(skip, tmp_path, tiny_model_dir, capsys):
    rows = [{"question": "What is 2 + 2?", "answer": "4"}, {"question": "Say hi.", "answer": "hi"}]
    data = write_parquet(tmp_path / "other.parquet", rows)
    config = write_config(tmp_path, tiny_model_dir, data, {}, skip_invalid_rows=skip)
    code, output = preprocess(config, capsys)
    expected = (
        "datasets[0].field_instruction:",
        "has no column 'instruction'; its columns: question, answer",
    )
    assert_fails_naming(code, output, data, expected)
    assert "set datasets[0].field_instruction to the column that holds it" in output


def test_parquet_rows_are_numbered(tmp_path, tiny_model_dir, capsys):
    rows = [
        {"instruction": "What is 6 * 7?", "output": 42},
        {"instruction": "Null answer.", "output": None},
        {"instruction": "Say hi.", "output": 1},
    ]
    data = write_parquet(tmp_path / "nulls.parquet", rows)
    code, output = preprocess(write_config(tmp_path, tiny_model_dir, data, {}), capsys)
    assert_fails_naming(code, output, data, ("row 2: field 'output' is null",))
    config = write_config(tmp_path, tiny_model_dir, data, {}, skip_invalid_rows=True)
    code, output = preprocess(config, capsys)
    assert code == 0 and "bad rows skipped: 1\n" in output and "data: 2 training rows" in output


def test_csv_values_stay_text(tmp_path, tiny_model_dir, tiny_tokenizer):
    """pandas would read `007` as the number 7; ft reads every CSV value as the text it is."""
    from ft.config.load import load_config
    from ft.data.pipeline import preview_examples

    data = tmp_path / "codes.csv"
    data.write_text(
        "instruction,output\nThe agent's code?,007\nA code with a BOM?,0.10\n", encoding="utf-8-sig"
    )
    config = write_config(tmp_path, tiny_model_dir, data, {})
    examples, _ = preview_examples(load_config(config), tiny_tokenizer, None)
    answers = [tiny_tokenizer.decode([t for t in e.labels if t != -100]) for e in examples]
    assert answers == ["007</s>", "0.10</s>"]
    assert [e.where for e in examples] == ["row 1 (line 2)", "row 2 (line 3)"]


def test_json_array_rows_carry_their_line(tmp_path, tiny_model_dir, tiny_tokenizer):
    from ft.config.load import load_config
    from ft.data.pipeline import prepare_data, preview_examples

    data = tmp_path / "a.json"
    data.write_text(
        '[\n  {"instruction": "q1", "output": "a1"},\n  "oops",\n\n  {"instruction": "q2",\n "output": "a2"}\n]'
    )
    config = write_config(tmp_path, tiny_model_dir, data, {})
    examples, report = preview_examples(load_config(config), tiny_tokenizer, None)
    assert [e.where for e in examples] == ["row 1 (line 2)", "row 3 (line 5)"]
    assert [str(b).split(") ", 1)[1] for b in report.bad_rows] == [
        "row 2 (line 3): a JSON string, not an object with fields"
    ]
    skipping = load_config(write_config(tmp_path, tiny_model_dir, data, {}, skip_invalid_rows=True))
    prepared = prepare_data(skipping, tiny_tokenizer, use_cache=False)
    assert prepared.report.skipped_bad == 1 and len(prepared.train) == 2


def test_utf16_file_is_one_error_and_a_bom_is_fine(tmp_path, tiny_model_dir, capsys):
    from ft.config.schema import DatasetSettings
    from ft.data.rows import read_source

    row = json.dumps({"instruction": "What is 2 + 2?", "output": "4"}) + "\n"
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text(row, encoding="utf-16")
    with pytest.raises(DataError, match=r"datasets\[0\]\.path: .*utf16\.jsonl is UTF-16, not UTF-8") as err:
        read_source("datasets[0]", DatasetSettings(path=str(utf16)))
    assert "re-encode the file as UTF-8" in (err.value.hint or "")
    code, output = preprocess(
        write_config(tmp_path, tiny_model_dir, utf16, {}, skip_invalid_rows=True), capsys
    )
    assert (
        code == 2 and str(utf16) in output and "Traceback" not in output
    )  # the config check may say it first
    bom = tmp_path / "bom.jsonl"
    bom.write_text(row * 2, encoding="utf-8-sig")
    code, output = preprocess(write_config(tmp_path, tiny_model_dir, bom, {}), capsys)
    assert code == 0 and "data: 2 training rows" in output, output


WORDS = "lorem ipsum dolor sit amet "
SMALL_ROW = {"instruction": "What is 2 + 2?", "output": "4"}


def long_row(chars: int) -> dict[str, str]:
    return {"instruction": "Repeat the words.", "output": WORDS * (chars // len(WORDS))}


@pytest.fixture(scope="module")
def big_row_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    return write_jsonl(path, [SMALL_ROW, long_row(10_000_000), SMALL_ROW])


def test_10mb_row_falls_under_the_length_rule(big_row_file, tmp_path, tiny_model_dir, capsys):
    """Tokenizing a 10 MB row whole took 15-24 s and over 3 GB here; it is cut first (see
    ft.data.pipeline.cut_to_budget), and the length rule drops it as any row over sequence_len. That the cut
    happens is asserted below (chars_before_cut); the time is measured in no test: machines are noisy."""
    assert big_row_file.stat().st_size > 10_000_000
    code, output = preprocess(write_config(tmp_path, tiny_model_dir, big_row_file, {}), capsys)
    assert code == 0, output
    assert "data: 2 training rows" in output and "rows over sequence_len dropped: 1\n" in output


def test_10mb_row_with_the_error_rule_names_the_line(big_row_file, tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir, big_row_file, {}, excess_length_strategy="error")
    code, output = preprocess(config, capsys)
    expected = ("line 2: 10,000,", "characters (more than", "tokens), over sequence_len 128")
    assert_fails_naming(code, output, big_row_file, expected)


def test_cutting_a_long_row_keeps_the_same_truncated_tokens(tmp_path, tiny_model_dir, tiny_tokenizer):
    """Cutting a row before tokenizing must not change what truncation keeps (a 100 KB row, so
    that tokenizing it whole for the comparison is cheap)."""
    from ft.config.load import load_config
    from ft.data.examples import row_renderer
    from ft.data.pipeline import char_budget, preview_examples
    from ft.data.prompts import special_tokens_of
    from ft.data.tokens import encode_segments

    row = long_row(100_000)
    data = write_jsonl(tmp_path / "long.jsonl", [row])
    cfg = load_config(write_config(tmp_path, tiny_model_dir, data, {}, excess_length_strategy="truncate"))
    (example,), report = preview_examples(cfg, tiny_tokenizer, None)
    budget = char_budget(cfg, tiny_tokenizer)
    assert report.truncated == 1 and example.chars_before_cut > budget
    assert sum(len(segment.text) for segment in example.segments) <= budget
    render = row_renderer(cfg, cfg.datasets[0], tiny_tokenizer, special_tokens_of(tiny_tokenizer))
    whole = encode_segments(tiny_tokenizer, render(row))
    assert len(whole.input_ids) > 128
    assert example.input_ids == whole.input_ids[:128]
    assert example.labels == whole.labels[:128]


@pytest.mark.integration
def test_the_rest_trains_with_skipping(tmp_path, tiny_model_dir, capsys):
    """One real tiny run on a file with one of each skippable kind of bad row."""
    good = [{"instruction": f"What is {i} + {i}?", "output": str(2 * i)} for i in range(8)]
    data = write_jsonl(tmp_path / "mixed.jsonl", good)
    with data.open("ab") as handle:
        handle.write(
            b'["a list"]\n{"instruction": "x", "output": null}\n{"instruction": "x", "output": 0.5}\n'
        )
        handle.write(b'{"instruction": "Cr\xe8me?", "output": "oui"}\n{"instruction": "cut", "outp')
    config = write_config(
        tmp_path,
        tiny_model_dir,
        data,
        {},
        skip_invalid_rows=True,
        adapter="lora",
        lora_r=4,
        lora_alpha=8,
        lora_target_linear=True,
        micro_batch_size=4,
        max_steps=2,
        save_steps=2,
        output_dir=str(tmp_path / "run"),
    )
    code = run_cli("train", str(config))
    output = capsys.readouterr()
    assert code == 0, output.out + output.err
    assert "bad rows skipped: 5\n" in output.out and "data: 8 training rows" in output.out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["global_step"] == 2
    assert record["data"]["bad_rows_skipped"] == 5 and record["data"]["train_rows"] == 8


def test_a_pretty_printed_object_is_one_error_not_a_bad_row_per_line(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "wrapped.json"
    data.write_text('{\n  "data": [\n    {"instruction": "q", "output": "a"}\n  ]\n}\n')
    code, output = preprocess(
        write_config(tmp_path, tiny_model_dir, data, {}, skip_invalid_rows=True), capsys
    )
    assert_fails_naming(
        code, output, data, ("is one JSON object over several lines (the rows may be the list under 'data')",)
    )
    assert "one JSON object per line" in output


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "arrays.jsonl",
            '["q1", "a1"]\n["q2", "a2"]\n',
            "line 2: invalid JSON: more text after the array's closing ']'",
        ),
        ("twice.csv", "instruction,output,output\nq,a,b\n", "line 1: the header names 'output' twice"),
    ],
)
def test_more_whole_file_errors(name, text, expected, tmp_path, tiny_model_dir, capsys):
    data = tmp_path / name
    data.write_text(text)
    code, output = preprocess(
        write_config(tmp_path, tiny_model_dir, data, {}, skip_invalid_rows=True), capsys
    )
    assert_fails_naming(code, output, data, (expected,))


def test_report_counts_for_run_json(tmp_path, tiny_model_dir, tiny_tokenizer):
    from ft.config.load import load_config
    from ft.data.pipeline import prepare_data

    config = write_config(tmp_path, tiny_model_dir, CORPUS / "not_objects.jsonl", {}, skip_invalid_rows=True)
    counts = prepare_data(load_config(config), tiny_tokenizer, use_cache=False).report.counts()
    assert counts["rows_read"] == 6 and counts["bad_rows_skipped"] == 4 and counts["train_rows"] == 2
