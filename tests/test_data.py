"""The data pipeline on local files with the tiny tokenizer: sources, field mapping, bad rows,
length rules, the eval split, packing, and the cache fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ft.base.errors import DataError
from ft.config.load import load_config
from ft.data.packing import pack_lengths, padding_efficiency
from ft.data.pipeline import prepare_data, preview_examples
from ft.data.prompts import segments_text
from ft.data.tokens import IGNORE_INDEX

ALPACA_ROWS = [
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "Translate to French.", "input": "good morning", "output": "bonjour"},
    {"instruction": "What is 2 + 2?", "output": "4"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def config(tmp_path: Path, model_dir: Path, datasets: list[dict], **keys: object):
    path = tmp_path / "ft.yml"
    path.write_text(yaml.safe_dump({"base_model": str(model_dir), "datasets": datasets, **keys}))
    return load_config(path)


def decoded_trained(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])


def test_alpaca_rows_with_and_without_input(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = write_jsonl(tmp_path / "a.jsonl", ALPACA_ROWS)
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(data), "type": "alpaca"}])
    examples, report = preview_examples(cfg, tiny_tokenizer, None)
    assert [e.where for e in examples] == ["line 1", "line 2", "line 3"]
    assert "### Input:\ngood morning\n\n### Response:\n" in segments_text(examples[1].segments)
    assert "### Input:" not in segments_text(examples[0].segments)
    assert [decoded_trained(tiny_tokenizer, e) for e in examples] == ["Paris.</s>", "bonjour</s>", "4</s>"]
    assert report.train.rows == 3 and not report.bad_rows


def test_field_mapping_and_system_prompt(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = write_jsonl(tmp_path / "c.jsonl", [{"Context": "I feel sad.", "Response": "I hear you."}])
    dataset = {
        "path": str(data),
        "type": "phi2",
        "field_instruction": "Context",
        "field_output": "Response",
        "system_prompt": "You are kind.",
    }
    cfg = config(tmp_path, tiny_model_dir, [dataset])
    (example,), _ = preview_examples(cfg, tiny_tokenizer, None)
    assert (
        segments_text(example.segments) == "<s>You are kind.\nInstruct: I feel sad.\nOutput: I hear you.</s>"
    )


def test_sharegpt_conversations_with_role_mapping(tmp_path, tiny_model_dir, tiny_tokenizer):
    row = {
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Goodbye!"},
        ]
    }
    data = write_jsonl(tmp_path / "s.jsonl", [row])
    cfg = config(
        tmp_path, tiny_model_dir, [{"path": str(data), "type": "chat_template", "chat_template": "phi3"}]
    )
    (example,), _ = preview_examples(cfg, tiny_tokenizer, None)
    assert segments_text(example.segments) == (
        "<s><|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\nGoodbye!<|end|>\n"
    )
    assert decoded_trained(tiny_tokenizer, example) == "Hello!<|end|>Goodbye!<|end|>"


def test_completion_text_with_bos_gets_no_second_bos(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = [{"text": "<s>[INST] Hi [/INST] Hello </s>"}, {"text": "plain text"}]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(data), "type": "completion"}])
    (formatted, plain), _ = preview_examples(cfg, tiny_tokenizer, None)
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    assert formatted.input_ids.count(bos) == 1 and formatted.input_ids[0] == bos
    assert formatted.input_ids.count(eos) == 1 and formatted.input_ids[-1] == eos
    assert plain.input_ids[0] == bos and plain.input_ids[-1] == eos
    assert plain.labels[1:] == plain.input_ids[1:]  # completion: everything trained


BAD_ROWS = [
    {"instruction": "ok", "output": "fine"},
    {"instruction": "no answer"},
    {"instruction": "empty", "output": "  "},
    {"instruction": ["a", "list"], "output": "x"},
    {"conversation": []},
]


def bad_file(tmp_path: Path) -> Path:
    path = write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS)
    with path.open("ab") as handle:
        handle.write(b'{"instruction": "broken json"\n')
        handle.write(b'{"instruction": "\xff\xfe", "output": "x"}\n')
    return path


def test_bad_rows_fail_with_dataset_row_and_reason(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(bad_file(tmp_path))}])
    with pytest.raises(DataError) as err:
        prepare_data(cfg, tiny_tokenizer)
    message = err.value.message
    assert message.startswith("6 row(s) cannot be used:")
    assert "datasets[0]" in message and "line 2: missing field 'output'" in message
    assert "line 3: field 'output' is empty" in message
    assert "line 4: field 'instruction' is a list, not text" in message
    assert "line 6: invalid JSON" in message
    assert "line 7" not in message  # only the first five are listed
    assert "... and 1 more" in message
    assert "skip_invalid_rows" in (err.value.hint or "")


def test_bad_rows_skipped_when_allowed_and_counted(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(bad_file(tmp_path))}], skip_invalid_rows=True)
    prepared = prepare_data(cfg, tiny_tokenizer)
    assert len(prepared.train) == 1
    assert prepared.report.skipped_bad == 6
    assert prepared.report.rows_read == 7


def long_rows() -> list[dict]:
    return [{"instruction": "Say it.", "output": "word " * n} for n in (2, 200)]


@pytest.mark.parametrize(
    ("strategy", "rows", "truncated"),
    [("drop", 1, 0), ("truncate", 2, 1)],
)
def test_length_rule(tmp_path, tiny_model_dir, tiny_tokenizer, strategy, rows, truncated):
    data = write_jsonl(tmp_path / "l.jsonl", long_rows())
    cfg = config(
        tmp_path, tiny_model_dir, [{"path": str(data)}], sequence_len=100, excess_length_strategy=strategy
    )
    prepared = prepare_data(cfg, tiny_tokenizer)
    assert len(prepared.train) == rows
    assert prepared.report.too_long == 1 and prepared.report.truncated == truncated
    assert max(len(ids) for ids in prepared.train["input_ids"]) <= 100


def test_length_rule_error_names_the_row(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = write_jsonl(tmp_path / "l.jsonl", long_rows())
    cfg = config(
        tmp_path, tiny_model_dir, [{"path": str(data)}], sequence_len=100, excess_length_strategy="error"
    )
    with pytest.raises(DataError, match=r"datasets\[0\] .* line 2: \d+ tokens, over sequence_len 100"):
        prepare_data(cfg, tiny_tokenizer)


def test_sources_json_csv_parquet_and_saved_folder_concatenate(tmp_path, tiny_model_dir, tiny_tokenizer):
    import datasets

    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(4)]
    (tmp_path / "a.json").write_text(json.dumps(rows[:1]))
    table = datasets.Dataset.from_list(rows[1:2])
    table.to_csv(str(tmp_path / "b.csv"), index=False)
    datasets.Dataset.from_list(rows[2:3]).to_parquet(str(tmp_path / "c.parquet"))
    datasets.Dataset.from_list(rows[3:4]).save_to_disk(str(tmp_path / "d"))
    paths = [tmp_path / "a.json", tmp_path / "b.csv", tmp_path / "c.parquet", tmp_path / "d"]
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(p)} for p in paths], shuffle_merged_datasets=False)
    examples, _ = preview_examples(cfg, tiny_tokenizer, None)
    assert [decoded_trained(tiny_tokenizer, e) for e in examples] == [f"a{i}</s>" for i in range(4)]
    assert [e.key for e in examples] == [f"datasets[{i}]" for i in range(4)]


def test_val_set_size_is_seeded_fraction_or_count(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    data = write_jsonl(tmp_path / "v.jsonl", rows)
    first = prepare_data(
        config(tmp_path, tiny_model_dir, [{"path": str(data)}], val_set_size=0.25), tiny_tokenizer
    )
    again = prepare_data(
        config(tmp_path, tiny_model_dir, [{"path": str(data)}], val_set_size=0.25), tiny_tokenizer
    )
    counted = prepare_data(
        config(tmp_path, tiny_model_dir, [{"path": str(data)}], val_set_size=3), tiny_tokenizer
    )
    assert (len(first.train), len(first.eval)) == (15, 5)
    assert first.eval["input_ids"] == again.eval["input_ids"]
    assert len(counted.eval) == 3
    assert not set(map(tuple, first.eval["input_ids"])) & set(map(tuple, first.train["input_ids"]))


def test_test_datasets_give_the_eval_split(tmp_path, tiny_model_dir, tiny_tokenizer):
    train = write_jsonl(tmp_path / "t.jsonl", ALPACA_ROWS)
    held = write_jsonl(tmp_path / "h.jsonl", ALPACA_ROWS[:1])
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(train)}], test_datasets=[{"path": str(held)}])
    prepared = prepare_data(cfg, tiny_tokenizer)
    assert (len(prepared.train), len(prepared.eval)) == (3, 1)


def test_packing_keeps_every_token_and_label_in_order(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = [{"instruction": f"Question {i}?", "output": "yes " * (i % 7 + 1)} for i in range(40)]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    plain = prepare_data(
        config(tmp_path, tiny_model_dir, [{"path": str(data)}], sequence_len=400), tiny_tokenizer
    )
    packed = prepare_data(
        config(tmp_path, tiny_model_dir, [{"path": str(data)}], sequence_len=400, sample_packing=True),
        tiny_tokenizer,
    )
    assert len(packed.train) < len(plain.train)
    unpacked = []
    for ids, labels, lengths in zip(
        packed.train["input_ids"], packed.train["labels"], packed.train["seq_lengths"], strict=True
    ):
        assert len(ids) == len(labels) == sum(lengths) <= 400
        start = 0
        for length in lengths:
            unpacked.append((tuple(ids[start : start + length]), tuple(labels[start : start + length])))
            start += length
    original = sorted(
        zip(map(tuple, plain.train["input_ids"]), map(tuple, plain.train["labels"]), strict=True)
    )
    assert sorted(unpacked) == original
    assert all(labels[0] == IGNORE_INDEX for _, labels in unpacked)
    assert packed.report.train.packing_efficiency == pytest.approx(
        packed.report.train.tokens / (len(packed.train) * 400)
    )


def test_pack_lengths_best_fit_decreasing():
    bins = pack_lengths([5, 3, 7, 2, 8, 1], capacity=10)
    assert sorted(sorted(b) for b in bins) == [[0, 3, 5], [1, 2], [4]] or all(
        sum([5, 3, 7, 2, 8, 1][i] for i in b) <= 10 for b in bins
    )
    assert len(bins) == 3
    assert sorted(i for b in bins for i in b) == list(range(6))
    assert padding_efficiency([2, 4, 4, 4], batch_size=2) == pytest.approx(14 / 16)
    with pytest.raises(ValueError):
        pack_lengths([11], capacity=10)


def test_cache_is_reused_and_a_changed_input_gives_a_new_key(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = write_jsonl(tmp_path / "c.jsonl", ALPACA_ROWS)
    keys = {"dataset_prepared_path": str(tmp_path / "prepared")}
    cfg = config(tmp_path, tiny_model_dir, [{"path": str(data)}], **keys)
    first = prepare_data(cfg, tiny_tokenizer)
    again = prepare_data(cfg, tiny_tokenizer)
    assert first.report.from_cache is None and again.report.from_cache is not None
    assert again.train["input_ids"] == first.train["input_ids"]
    write_jsonl(data, ALPACA_ROWS[:2])
    changed_file = prepare_data(cfg, tiny_tokenizer)
    assert changed_file.fingerprint != first.fingerprint and changed_file.report.from_cache is None
    assert len(changed_file.train) == 2
    longer = config(tmp_path, tiny_model_dir, [{"path": str(data)}], sequence_len=300, **keys)
    masked = config(tmp_path, tiny_model_dir, [{"path": str(data)}], train_on_inputs=True, **keys)
    fingerprints = {changed_file.fingerprint, prepare_data(longer, tiny_tokenizer).fingerprint}
    fingerprints.add(prepare_data(masked, tiny_tokenizer).fingerprint)
    assert len(fingerprints) == 3


def test_missing_local_file_names_the_key(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg = config(tmp_path, tiny_model_dir, [{"path": "./nope.jsonl"}])
    with pytest.raises(DataError, match=r"datasets\[0\]\.path: './nope.jsonl' does not exist"):
        prepare_data(cfg, tiny_tokenizer)


def test_eos_stays_trained_when_it_is_also_the_pad_token(tmp_path, tiny_model_dir):
    """trl masks pad ids only when it builds labels itself; ft hands it labels, so an EOS that is
    also the pad token is still learned (the model learns to stop)."""
    from transformers import AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    data = write_jsonl(tmp_path / "e.jsonl", ALPACA_ROWS)
    prepared = prepare_data(config(tmp_path, tiny_model_dir, [{"path": str(data)}]), tokenizer)
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    batch = collator([prepared.train[i] for i in range(len(prepared.train))])
    eos = tokenizer.eos_token_id
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        last = int(mask.sum()) - 1
        assert ids[last] == eos and labels[last] == eos  # the answer's EOS is trained
        assert (labels[last + 1 :] == IGNORE_INDEX).all()  # the padding after it is not


def test_chat_turns_after_the_last_answer_are_left_out(tmp_path, tiny_model_dir, tiny_tokenizer):
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    row["messages"].append({"role": "user", "content": "Unanswered?"})
    data = write_jsonl(tmp_path / "m.jsonl", [row])
    cfg = config(
        tmp_path, tiny_model_dir, [{"path": str(data), "type": "chat_template", "chat_template": "phi3"}]
    )
    (example,), report = preview_examples(cfg, tiny_tokenizer, None)
    assert segments_text(example.segments) == "<s><|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
    assert not report.bad_rows
