"""axolotl's data options with their exact effect on ids and labels: roles_to_train, train_on_eos,
eot_tokens, chat_template_jinja, drop_system_message, input_output, completion rows split at
sequence_len, shuffle_merged_datasets, dataset_exact_deduplication, min_sample_len and
dataset_processes (the same examples from two processes). Tokenizer only (tests/golden's)."""

from __future__ import annotations

import functools
import json
import operator
from pathlib import Path
from typing import Any

import pytest

from ft.base.errors import FtError
from ft.config.schema import FtConfig
from ft.data.examples import row_renderer
from ft.data.prompts import special_tokens_of
from ft.data.tokens import IGNORE_INDEX, encode_segments

GOLDEN_TOKENIZER = Path(__file__).parent / "golden" / "tokenizer"
CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao"},
    ]
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(GOLDEN_TOKENIZER)


def trained_text(tokenizer: Any, dataset: dict[str, Any], row: dict[str, Any], **top: Any) -> list[str]:
    """The trained spans of a row, each decoded: what the model learns to write."""
    cfg = FtConfig(base_model="x", datasets=[{"path": "x", **dataset}], **top)
    segments = row_renderer(cfg, cfg.datasets[0], tokenizer, special_tokens_of(tokenizer))(row)
    encoded = encode_segments(tokenizer, segments)
    spans, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return [*spans, tokenizer.decode(current)] if current else spans


CHATML = {"type": "chat_template", "chat_template": "chatml"}


def test_chatml_trains_each_answer_and_its_terminator(tokenizer: Any) -> None:
    assert trained_text(tokenizer, CHATML, CHAT) == ["Hello<|im_end|>", "Ciao<|im_end|>"]


def test_roles_to_train_adds_the_user_turns(tokenizer: Any) -> None:
    spans = trained_text(tokenizer, {**CHATML, "roles_to_train": ["user", "assistant"]}, CHAT)
    assert spans == ["Hi<|im_end|>", "Hello<|im_end|>", "Bye<|im_end|>", "Ciao<|im_end|>"]


@pytest.mark.parametrize(
    ("train_on_eos", "spans"),
    [
        ("turn", ["Hello<|im_end|>", "Ciao<|im_end|>"]),
        ("none", ["Hello", "Ciao"]),
        ("last", ["Hello", "Ciao<|im_end|>"]),
        ("all", ["<|im_end|>", "<|im_end|>", "Hello<|im_end|>", "<|im_end|>", "Ciao<|im_end|>"]),
    ],
)
def test_train_on_eos(tokenizer: Any, train_on_eos: str, spans: list[str]) -> None:
    assert trained_text(tokenizer, {**CHATML, "train_on_eos": train_on_eos}, CHAT) == spans


def test_eot_tokens_name_the_terminator(tokenizer: Any) -> None:
    """axolotl's default end-of-turn token is EOS: with eot_tokens: [</s>], a ChatML answer trains no
    terminator, as axolotl trains it (ft's default is the template's own, <|im_end|>)."""
    assert trained_text(tokenizer, CHATML, CHAT, eot_tokens=["</s>"]) == ["Hello", "Ciao"]


def test_a_terminator_the_tokenizer_splits_is_refused(tokenizer: Any) -> None:
    with pytest.raises(FtError, match="splits into"):
        trained_text(tokenizer, CHATML, CHAT, eot_tokens=["<|not a token|>"])


def test_chat_template_jinja_renders_a_users_template(tokenizer: Any, tmp_path: Path) -> None:
    template = tmp_path / "mine.jinja"
    template.write_text(
        "{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] }}{% if m['role'] == 'assistant' %}"
        "{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    dataset = {"type": "chat_template", "chat_template": "jinja", "chat_template_jinja": str(template)}
    # The answer starts where the generation prompt ends: the space after "ASSISTANT:" is trained.
    assert trained_text(tokenizer, dataset, CHAT) == [" Hello</s>", " Ciao</s>"]


def test_drop_system_message(tokenizer: Any) -> None:
    cfg = FtConfig(base_model="x", datasets=[{"path": "x", **CHATML, "drop_system_message": True}])
    segments = row_renderer(cfg, cfg.datasets[0], tokenizer, special_tokens_of(tokenizer))(CHAT)
    assert "Be brief." not in "".join(s.text for s in segments)


def test_input_output_segments_are_encoded_apart_and_trained_by_label(tokenizer: Any) -> None:
    row = {"segments": [{"text": "<s>Q: hi\n", "label": False}, {"text": "A: yo</s>", "label": True}]}
    assert trained_text(tokenizer, {"type": "input_output"}, row) == ["A: yo</s>"]


# ---------------------------------------------------------------------------------------------
# The whole preparation


def prepare(tmp_path: Path, tokenizer: Any, datasets: list[dict[str, Any]], **top: Any) -> Any:
    from ft.data.pipeline import prepare_data

    cfg = FtConfig(base_model="x", datasets=datasets, **top)
    return prepare_data(cfg, tokenizer, use_cache=False)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_completion_rows_over_sequence_len_are_split_as_axolotl_does(tmp_path: Path, tokenizer: Any) -> None:
    text = " ".join(["the quick brown fox jumps over a lazy dog"] * 30)
    data = write_rows(tmp_path / "t.jsonl", [{"text": text}])
    prepared = prepare(
        tmp_path,
        tokenizer,
        [{"path": data, "type": "completion"}],
        sequence_len=64,
        shuffle_merged_datasets=False,
    )
    whole = [
        tokenizer.bos_token_id,
        *tokenizer(text, add_special_tokens=False)["input_ids"],
        tokenizer.eos_token_id,
    ]
    pieces = prepared.train["input_ids"]
    assert [len(p) for p in pieces] == [64] * (len(whole) // 64) + (
        [len(whole) % 64] if len(whole) % 64 else []
    )
    assert functools.reduce(operator.iadd, pieces, []) == whole
    assert prepared.report.split_long == 1 and prepared.report.dropped_too_long == 0
    # With a rule of its own, the dataset follows it.
    dropped = prepare(
        tmp_path,
        tokenizer,
        [{"path": data, "type": "completion"}, {"path": data, "type": "completion"}],
        sequence_len=64,
        excess_length_strategy="truncate",
    )
    assert [len(p) for p in dropped.train["input_ids"]] == [64, 64]


def alpaca_rows(count: int) -> list[dict[str, str]]:
    return [{"instruction": f"say {i}", "output": f"number {i}"} for i in range(count)]


def test_shuffle_merged_datasets(tmp_path: Path, tokenizer: Any) -> None:
    first = write_rows(tmp_path / "a.jsonl", alpaca_rows(20))
    second = write_rows(tmp_path / "b.jsonl", alpaca_rows(20)[::-1])
    datasets = [{"path": first}, {"path": second}]
    kept = prepare(tmp_path, tokenizer, datasets, shuffle_merged_datasets=False)
    shuffled = prepare(tmp_path, tokenizer, datasets, shuffle_merged_datasets=True)
    again = prepare(tmp_path, tokenizer, datasets, shuffle_merged_datasets=True)
    in_order = [tokenizer.decode(ids) for ids in kept.train["input_ids"]]
    assert "say 0\n" in in_order[0] and "say 19\n" in in_order[20]  # file order, file after file
    assert sorted(shuffled.train["input_ids"]) == sorted(kept.train["input_ids"])
    assert shuffled.train["input_ids"] != kept.train["input_ids"]
    assert shuffled.train["input_ids"] == again.train["input_ids"]  # seeded


def test_exact_deduplication_and_min_sample_len(tmp_path: Path, tokenizer: Any) -> None:
    rows = [
        *alpaca_rows(5),
        *alpaca_rows(3),
        {"instruction": "a much longer instruction " * 8, "output": "ok"},
    ]
    data = write_rows(tmp_path / "d.jsonl", rows)
    unique = prepare(tmp_path, tokenizer, [{"path": data}], dataset_exact_deduplication=True)
    assert (unique.report.duplicates, unique.report.train.rows) == (3, 6)
    long_only = prepare(
        tmp_path, tokenizer, [{"path": data}], min_sample_len=150
    )  # the short rows: 95 tokens
    assert (long_only.report.too_short, long_only.report.train.rows) == (8, 1)


def test_dataset_processes_give_the_same_examples(tmp_path: Path, tokenizer: Any) -> None:
    from ft.data.pipeline import PARALLEL_MIN_ROWS

    rows = alpaca_rows(2 * PARALLEL_MIN_ROWS + 7)
    rows[5]["output"] = ""  # a bad row in the first part, reported the same way
    data = write_rows(tmp_path / "many.jsonl", rows)
    one = prepare(
        tmp_path, tokenizer, [{"path": data}], skip_invalid_rows=True, shuffle_merged_datasets=False
    )
    two = prepare(
        tmp_path,
        tokenizer,
        [{"path": data}],
        skip_invalid_rows=True,
        shuffle_merged_datasets=False,
        dataset_processes=2,
    )
    assert two.train["input_ids"] == one.train["input_ids"] and two.train["labels"] == one.train["labels"]
    assert [str(r) for r in two.report.bad_rows] == [str(r) for r in one.report.bad_rows]
    assert two.report.counts() == one.report.counts()


# ---------------------------------------------------------------------------------------------
# The run folder's tokenizer carries the template trained on


def saved_template_renders_the_training_text(tokenizer: Any, cfg: FtConfig, messages: list[Any]) -> None:
    from ft.data.chat_templates import chat_template_jinja
    from ft.data.prompts import segments_text
    from ft.data.renderers import renderer_for_config

    tokens = special_tokens_of(tokenizer)
    fmt = renderer_for_config(cfg, tokenizer)
    saved = chat_template_jinja(cfg, tokenizer)  # what ft train writes into the run's tokenizer
    rows = [{"role": m.role, "content": m.content} for m in messages]
    render = tokenizer.apply_chat_template
    assert render(rows, chat_template=saved, tokenize=False) == segments_text(fmt.render(messages, tokens))
    prompt = segments_text(fmt.render(messages[:-1], tokens, add_generation_prompt=True))
    assert render(rows[:-1], chat_template=saved, tokenize=False, add_generation_prompt=True) == prompt


def conversation_of(*turns: str, system: str | None = None) -> list[Any]:
    from ft.data.prompts import Message

    messages = [Message("system", system)] if system else []
    return messages + [Message("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(turns)]


@pytest.mark.parametrize(
    "name", ["chatml", "llama3", "phi_3", "mistral_v1", "gemma", "qwen_25", "vicuna_v1.1", "inst"]
)
def test_the_saved_template_is_axolotls_and_renders_what_was_trained(tokenizer: Any, name: str) -> None:
    from ft.data.chat_templates import chat_template_jinja
    from ft.data.jinja import named_template

    cfg = FtConfig(base_model="x", chat_template=name, datasets=[{"path": "x", "type": "chat_template"}])
    assert chat_template_jinja(cfg, tokenizer) == named_template(name)
    saved_template_renders_the_training_text(tokenizer, cfg, conversation_of("Hi", "Hello", "Bye", "Ciao"))


@pytest.mark.parametrize(
    "name",
    ["alpaca:chat", "oasst:chatml", "alpaca_w_system.load_open_orca", "context_qa.load_v2", "orcamini"],
)
def test_an_instruction_types_saved_template_renders_what_ft_chat_sends(tokenizer: Any, name: str) -> None:
    cfg = FtConfig(base_model="x", datasets=[{"path": "x", "type": name}])
    saved_template_renders_the_training_text(tokenizer, cfg, conversation_of("Hi", "Hello", "Bye", "Ciao"))
    saved_template_renders_the_training_text(
        tokenizer, cfg, conversation_of("Hi", "Hello", system="Be brief.")
    )
