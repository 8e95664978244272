"""Preference pairs with the tiny tokenizer: the row shapes, rendering with the run's format (the
prompt tokens SFT trained and chat sends), bad pairs with their row, the length rules, the cache,
and `ft format` / `ft preprocess` for pairs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ft.base.errors import DataError
from ft.cli.app import app
from ft.config.load import load_config, read_config
from ft.data.pairs import PairExample, prepare_pairs, preview_pairs, split_ids
from ft.data.pipeline import preview_examples
from ft.data.prompts import Message, segments_text, special_tokens_of
from ft.data.renderers import renderer_for_config
from ft.data.tokens import IGNORE_INDEX, encode_segments

Q, GOOD, BAD = "What is the capital of France?", "Paris.", "London."
USER = {"role": "user", "content": Q}


def turn(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


SHAPES = {
    "strings": {"prompt": Q, "chosen": GOOD, "rejected": BAD},
    "prompt turns, answer turns": {"prompt": [USER], "chosen": [turn(GOOD)], "rejected": [turn(BAD)]},
    "answer as one message": {"prompt": Q, "chosen": turn(GOOD), "rejected": turn(BAD)},
    "implicit prompt": {"chosen": [USER, turn(GOOD)], "rejected": [USER, turn(BAD)]},
    "messages column (axolotl chat_template.default)": {
        "messages": [USER],
        "chosen": turn(GOOD),
        "rejected": turn(BAD),
    },
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def pair_config(
    tmp_path: Path, model_dir: Path, rows: list[dict], kind: str = "chat_template", **keys: object
):
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    dataset = {"path": str(data), "type": kind, **keys.pop("dataset", {})}  # type: ignore[dict-item]
    config = {"base_model": str(model_dir), "rl": "dpo", "datasets": [dataset], "sequence_len": 256, **keys}
    if kind == "chat_template":
        config["chat_template"] = "phi3"
    path = tmp_path / "ft.yml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def texts(pair: PairExample) -> tuple[str, str, str]:
    return segments_text(pair.prompt), segments_text(pair.chosen), segments_text(pair.rejected)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_row_shape_renders_the_same_pair(shape, tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = pair_config(tmp_path, tiny_model_dir, [SHAPES[shape]])
    pairs, report = preview_pairs(cfg, tiny_tokenizer, None)
    assert report.bad_rows == []
    assert texts(pairs[0]) == (
        f"<s><|user|>\n{Q}<|end|>\n<|assistant|>\n",
        f"{GOOD}<|end|>\n",
        f"{BAD}<|end|>\n",
    )
    # What is scored: each answer and its terminator, not the newline the format writes after it.
    assert tiny_tokenizer.decode(pairs[0].chosen_ids) == f"{GOOD}<|end|>"
    assert tiny_tokenizer.decode(pairs[0].rejected_ids) == f"{BAD}<|end|>"


@pytest.mark.parametrize("name", ["alpaca", "llama2_chat", "phi2", "phi3"])
def test_pair_tokens_are_the_sft_row_tokens_and_the_chat_prompt(
    name, tmp_path, tiny_model_dir, tiny_tokenizer
):
    cfg = pair_config(tmp_path, tiny_model_dir, [SHAPES["strings"]], kind=name)
    pair = preview_pairs(cfg, tiny_tokenizer, None)[0][0]
    sft_cfg = cfg.model_copy(update={"rl": None})
    write_jsonl(Path(cfg.datasets[0].path), [{"instruction": Q, "output": GOOD}])
    sft = preview_examples(sft_cfg, tiny_tokenizer, None)[0][0]
    # The chosen sequence is the SFT row token for token, and what is scored is what SFT trains.
    last = max(i for i, label in enumerate(sft.labels) if label != IGNORE_INDEX)
    assert pair.prompt_ids + pair.chosen_ids == sft.input_ids[: last + 1]
    assert pair.chosen_ids == [t for t in sft.labels if t != IGNORE_INDEX]
    # The prompt is what chat sends: the format's generation prompt, encoded as training encodes it.
    tokens = special_tokens_of(tiny_tokenizer)
    chat = renderer_for_config(cfg, tiny_tokenizer).render(
        [Message("user", Q)], tokens, add_generation_prompt=True
    )
    assert pair.prompt_ids == encode_segments(tiny_tokenizer, chat).input_ids


def test_instruction_and_input_columns_render_as_sft_alpaca_rows(tmp_path, tiny_model_dir, tiny_tokenizer):
    row = {
        "instruction": "Translate to French.",
        "input": "good morning",
        "chosen": "bonjour",
        "rejected": "bonsoir",
    }
    cfg = pair_config(tmp_path, tiny_model_dir, [row], kind="alpaca")
    prompt, chosen, _ = texts(preview_pairs(cfg, tiny_tokenizer, None)[0][0])
    assert prompt.endswith(
        "### Instruction:\nTranslate to French.\n\n### Input:\ngood morning\n\n### Response:\n"
    )
    assert prompt.startswith("<s>Below is an instruction that describes a task, paired with an input")
    assert chosen == "bonjour</s>"


def test_earlier_assistant_turns_are_context_not_scored(tmp_path, tiny_model_dir, tiny_tokenizer):
    history = [{"role": "user", "content": "Hello!"}, turn("Hello! How are you?"), USER]
    cfg = pair_config(
        tmp_path, tiny_model_dir, [{"prompt": history, "chosen": [turn(GOOD)], "rejected": [turn(BAD)]}]
    )
    pair = preview_pairs(cfg, tiny_tokenizer, None)[0][0]
    assert not any(segment.trained for segment in pair.prompt)
    assert "Hello! How are you?<|end|>" in segments_text(pair.prompt)
    assert tiny_tokenizer.decode(pair.chosen_ids) == f"{GOOD}<|end|>"


def test_system_column_and_axolotl_chatml_intel_fields(tmp_path, tiny_model_dir, tiny_tokenizer):
    row = {"system": "Answer briefly.", "question": Q, "chosen": GOOD, "rejected": BAD}
    data = write_jsonl(tmp_path / "intel.jsonl", [row])
    path = tmp_path / "intel.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "rl": "dpo",
                "chat_template": "phi3",
                "datasets": [{"path": str(data), "type": "chatml.intel"}],
            }
        )
    )
    cfg, notes = read_config(path)
    assert notes == [
        "datasets[0].type: chatml.intel (axolotl) read as type: chat_template, field_system: system, "
        "field_prompt: question; rendered with chat_template phi3, the run's format"
    ]
    prompt = texts(preview_pairs(cfg, tiny_tokenizer, None)[0][0])[0]
    assert prompt == f"<s><|system|>\nAnswer briefly.<|end|>\n<|user|>\n{Q}<|end|>\n<|assistant|>\n"


BAD_PAIRS = [
    (
        {"prompt": Q, "chosen": GOOD, "rejected": GOOD},
        "chosen and rejected are the same answer: the pair teaches nothing",
    ),
    ({"prompt": Q, "chosen": "  ", "rejected": BAD}, "field 'chosen' is empty"),
    ({"prompt": Q, "chosen": GOOD}, "missing field 'rejected' (columns: prompt, chosen)"),
    ({"prompt": Q, "chosen": GOOD, "rejected": None}, "field 'rejected' is null"),
    (
        {"prompt": Q, "chosen": 3.5, "rejected": BAD},
        "field 'chosen' is a number (3.5), not text: quote it to keep its exact spelling",
    ),
    ({"chosen": GOOD, "rejected": BAD}, "missing field 'prompt' (columns: chosen, rejected)"),
    (
        {"prompt": [USER, turn("Hi")], "chosen": GOOD, "rejected": BAD},
        "the prompt does not end with a user turn, so there is nothing to answer",
    ),
    (
        {"chosen": [USER, turn(GOOD)], "rejected": [{"role": "user", "content": "Other?"}, turn(BAD)]},
        "'chosen' goes on for 2 turn(s) after the turns it shares with the other answer; "
        "a pair needs one final assistant answer on each side",
    ),
    (
        {"prompt": "word " * 40, "chosen": GOOD, "rejected": BAD},
        "the prompt has 168 tokens, over max_prompt_len 30",
    ),
]


def test_bad_pairs_are_reported_with_dataset_and_row(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = [SHAPES["strings"], *(row for row, _ in BAD_PAIRS)]
    cfg = pair_config(tmp_path, tiny_model_dir, rows, max_prompt_len=30)
    pairs, report = preview_pairs(cfg, tiny_tokenizer, None)
    assert len(pairs) == 1
    path = cfg.datasets[0].path
    assert [str(bad) for bad in report.bad_rows] == [
        f"datasets[0] ({path}) line {number}: {reason}"
        for number, (_, reason) in enumerate(BAD_PAIRS, start=2)
    ]
    with pytest.raises(DataError) as err:
        prepare_pairs(cfg, tiny_tokenizer, use_cache=False)
    assert f"{len(BAD_PAIRS)} row(s) cannot be used" in err.value.message
    skipping = cfg.model_copy(update={"skip_invalid_rows": True})
    prepared = prepare_pairs(skipping, tiny_tokenizer, use_cache=False)
    assert (len(prepared.train), prepared.report.skipped_bad) == (1, len(BAD_PAIRS))


LONG = {"prompt": Q, "chosen": "Paris is the capital. " * 20, "rejected": "London is the capital. " * 20}


def test_length_rules_drop_truncate_error(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = [SHAPES["strings"], LONG]
    dropped = pair_config(tmp_path, tiny_model_dir, rows, sequence_len=40)
    pairs, report = preview_pairs(dropped, tiny_tokenizer, None)
    assert (len(pairs), report.too_long, report.dropped_too_long) == (1, 1, 1)

    cut = dropped.model_copy(update={"excess_length_strategy": "truncate"})
    pairs, report = preview_pairs(cut, tiny_tokenizer, None)
    assert (len(pairs), report.truncated) == (2, 1)
    assert pairs[1].truncated and pairs[1].longest == 40
    assert len(pairs[1].prompt_ids) + len(pairs[1].chosen_ids) == 40

    strict = dropped.model_copy(update={"excess_length_strategy": "error"})
    with pytest.raises(DataError) as err:
        preview_pairs(strict, tiny_tokenizer, None)
    assert "line 2: " in err.value.message and "over sequence_len 40" in err.value.message


def test_answers_identical_after_truncation_are_a_bad_pair(tmp_path, tiny_model_dir, tiny_tokenizer):
    same_start = {
        "prompt": Q,
        "chosen": "Paris is the capital. " * 10 + "Yes.",
        "rejected": "Paris is the capital. " * 10 + "No.",
    }
    cfg = pair_config(
        tmp_path, tiny_model_dir, [same_start], sequence_len=40, excess_length_strategy="truncate"
    )
    pairs, report = preview_pairs(cfg, tiny_tokenizer, None)
    assert pairs == []
    assert str(report.bad_rows[0]).endswith(
        "line 1: chosen and rejected are identical after truncation to sequence_len 40"
    )


def test_a_prompt_that_fills_sequence_len_leaves_no_answer(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = pair_config(
        tmp_path,
        tiny_model_dir,
        [{"prompt": "word " * 60, "chosen": GOOD, "rejected": BAD}],
        sequence_len=40,
        excess_length_strategy="truncate",
    )
    _, report = preview_pairs(cfg, tiny_tokenizer, None)
    assert "the prompt alone has" in str(report.bad_rows[0]) and "no answer is left" in str(
        report.bad_rows[0]
    )


def test_split_ids_takes_the_common_prompt_and_scored_answers() -> None:
    ignore = IGNORE_INDEX
    # A token (7 vs 8) that joins the end of the prompt with each answer differs between the two:
    # the prompt is what both share; each answer runs to its last scored token (9 is not scored).
    chosen, chosen_labels = [1, 2, 7, 5, 6, 9], [ignore, ignore, 7, 5, 6, ignore]
    rejected, rejected_labels = [1, 2, 8, 6, 9], [ignore, ignore, 8, 6, ignore]
    assert split_ids(chosen, chosen_labels, rejected, rejected_labels) == ([1, 2], [7, 5, 6], [8, 6])


def test_prepared_pairs_and_the_cache_fingerprint(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = [SHAPES["strings"], {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}] * 3
    cfg = pair_config(
        tmp_path, tiny_model_dir, rows, val_set_size=2, dataset_prepared_path=str(tmp_path / "cache")
    )
    prepared = prepare_pairs(cfg, tiny_tokenizer)
    assert prepared.train.column_names == ["prompt_ids", "chosen_ids", "rejected_ids"]
    assert (len(prepared.train), len(prepared.eval)) == (4, 2)
    assert prepared.report.train.sequences == 8
    again = prepare_pairs(cfg, tiny_tokenizer)
    assert again.report.from_cache and again.fingerprint == prepared.fingerprint
    assert again.train["chosen_ids"] == prepared.train["chosen_ids"]
    other = prepare_pairs(cfg.model_copy(update={"max_prompt_len": 200}), tiny_tokenizer)
    assert other.fingerprint != prepared.fingerprint and not other.report.from_cache


# ---------------------------------------------------------------------------------------------
# ft format / ft preprocess


def cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


def write_pair_config(tmp_path: Path, model_dir: Path, rows: list[dict], **keys: object) -> Path:
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    path = tmp_path / "dpo.yml"
    config = {
        "base_model": str(model_dir),
        "rl": "dpo",
        "datasets": [{"path": str(data), "type": "phi2"}],
        **keys,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_format_json_gives_prompt_chosen_rejected_and_ids(tmp_path, tiny_model_dir, tiny_tokenizer):
    config = write_pair_config(tmp_path, tiny_model_dir, [SHAPES["strings"]])
    result = cli("format", str(config), "--json", "--tokens")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {k: record[k] for k in ("prompt", "chosen", "rejected")} == {
        "prompt": f"<s>Instruct: {Q}\nOutput:",
        "chosen": f" {GOOD}</s>",
        "rejected": f" {BAD}</s>",
    }
    assert (
        tiny_tokenizer.decode(record["prompt_ids"] + record["chosen_ids"])
        == f"<s>Instruct: {Q}\nOutput: {GOOD}</s>"
    )
    assert record["rejected_ids"][-1] == tiny_tokenizer.eos_token_id


def test_format_shows_the_prompt_once_then_both_answers(tmp_path, tiny_model_dir):
    config = write_pair_config(tmp_path, tiny_model_dir, [SHAPES["strings"]])
    result = cli("format", str(config))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count(Q) == 1
    assert "pair 1 · datasets[0] line 1 · prompt" in out
    # NO_COLOR: the scored answers in brackets, the prompt unmarked (masked), after the legend.
    assert out.startswith("legend: ⟦trained⟧, masked (not trained) unmarked")
    assert f"prompt\n<s>Instruct: {Q}↵\nOutput:\n" in out
    assert (
        out.index("prompt\n") < out.index("chosen ✓\n⟦·Paris.</s>⟧") < out.index("rejected ✗\n⟦·London.</s>⟧")
    )


def test_format_tokens_of_a_pair_mark_the_scored_answers(tmp_path, tiny_model_dir):
    config = write_pair_config(tmp_path, tiny_model_dir, [SHAPES["strings"]])
    result = cli("format", str(config), "--tokens")
    assert result.exit_code == 0, result.output
    prompt_cells, chosen_cells, rejected_cells = [
        line for line in result.stdout.splitlines() if re.match(r"⟦?\d+:", line)
    ]
    assert "⟦" not in prompt_cells and prompt_cells.startswith("0:<s>")
    assert chosen_cells.endswith("⟦1:</s>⟧") and rejected_cells.endswith("⟦1:</s>⟧")
    assert all(cell.startswith("⟦") for cell in chosen_cells.split())


def test_format_json_stats_of_pairs_ends_with_a_stats_line(tmp_path, tiny_model_dir):
    config = write_pair_config(tmp_path, tiny_model_dir, [SHAPES["strings"]] * 2)
    result = cli("format", str(config), "--json", "--stats", "-n", "1")
    assert result.exit_code == 0, result.output
    first, last = result.stdout.splitlines()
    assert json.loads(first)["chosen"] == f" {GOOD}</s>"
    stats = json.loads(last)["stats"]
    assert stats["scope"] == "whole training set" and stats["train"]["rows"] == 2


def test_format_stats_over_the_pairs(tmp_path, tiny_model_dir):
    rows = [SHAPES["strings"], {"prompt": Q, "chosen": GOOD, "rejected": GOOD}, LONG]
    config = write_pair_config(tmp_path, tiny_model_dir, rows, sequence_len=40)
    result = cli("format", str(config), "--stats")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "pairs 1 of 3 read · 2 sequences" in out
    assert "chosen longer than rejected in 0 of 1 pairs" in out
    assert "1 pair(s) over sequence_len 40: 1 dropped" in out
    assert "1 bad pair(s): training would stop on them" in out
    assert "line 2: chosen and rejected are the same answer" in out


def test_preprocess_writes_pairs(tmp_path, tiny_model_dir):
    config = write_pair_config(
        tmp_path, tiny_model_dir, [SHAPES["strings"]] * 2, dataset_prepared_path=str(tmp_path / "prep")
    )
    result = cli("preprocess", str(config))
    assert result.exit_code == 0, result.output
    assert "data: 2 training pairs (4 sequences" in " ".join(result.stdout.split())
