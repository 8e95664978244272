"""ft gives the same tokens as axolotl: golden fixtures made by axolotl's own prompters
(tests/golden/make_axolotl_golden.py, axolotl 0.21.0) on a tokenizer built there and committed.

For every instruction type, `input_output` and `completion`: identical `input_ids` and labels on
every row, except that ft never trains position 0 (it is never predicted). For every named chat
template: identical `input_ids` and labels, except the documented, deliberate differences:
- ft trains the turn terminator (`<|im_end|>`, `<|eot_id|>`, ...) where axolotl, whose default
  end-of-turn token is EOS, warns and trains none;
- ft trains text a template writes between its generation prompt and the answer (mistral's space
  after `[/INST]` when the tokenizer makes it a token of its own, command-a's `<|START_RESPONSE|>`):
  the model must write it after the prompt inference gives it;
- an answer that starts with whitespace the tokenizer would join to the prompt's last characters
  is encoded after a prompt encoded alone, as inference encodes it (the boundary rule).
And for the FastChat conversations of axolotl's legacy `type: sharegpt`: FastChat's exact text.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ft.config.formats import CONVERSATIONS
from ft.config.schema import FtConfig
from ft.data.examples import row_renderer
from ft.data.prompts import Message, RenderError, segments_text, special_tokens_of
from ft.data.renderers import chat_template_format
from ft.data.tokens import IGNORE_INDEX, encode_segments

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = json.loads(gzip.decompress((GOLDEN_DIR / "axolotl.json.gz").read_bytes()))
CHAT_ROWS = [{"messages": messages} for messages in GOLDEN["rows"]["chat"]]
TYPE_ROWS = {"input_output": GOLDEN["rows"]["input_output"], "completion": GOLDEN["rows"]["completion"]}
GOLDEN_DAY = datetime(2026, 11, 30)
"""The day make_axolotl_golden.py ran. Templates that print today's date (llama3_2_vision, llama4,
mistral_v7_tekken call transformers' `strftime_now`) printed that day into the fixtures."""
DATE_FORMATS = ("%d %b %Y", "%Y-%m-%d")


def on_golden_day(text: str) -> str:
    """`text` with today's date, as the templates print it, replaced by the fixtures' day."""
    today = datetime.now()
    for fmt in DATE_FORMATS:
        text = text.replace(today.strftime(fmt), GOLDEN_DAY.strftime(fmt))
    return text


@cache
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(GOLDEN_DIR / "tokenizer")


def ft_encode(dataset: dict[str, Any], row: dict[str, Any]) -> tuple[list[int], str]:
    """ft's ids and trained positions ('1') for one row, as `ft train` prepares it."""
    cfg = FtConfig(base_model="x", datasets=[{"path": "x", **dataset}])
    tok = tokenizer()
    render = row_renderer(cfg, cfg.datasets[0], tok, special_tokens_of(tok))
    segments = [replace(segment, text=on_golden_day(segment.text)) for segment in render(row)]
    encoded = encode_segments(tok, segments)
    return encoded.input_ids, "".join("0" if label == IGNORE_INDEX else "1" for label in encoded.labels)


def golden(case: dict[str, Any]) -> list[int]:
    return [int(token) for token in case["input_ids"].split()]


def test_the_fixtures_cover_every_type_and_template_with_20_rows_or_more() -> None:
    from ft.config.formats import AXOLOTL_TEMPLATES, INSTRUCTION_TYPES

    assert set(GOLDEN["types"]) == {*INSTRUCTION_TYPES, "alpaca", "input_output", "completion"}
    assert set(GOLDEN["templates"]) == set(AXOLOTL_TEMPLATES) - {"inst"}  # inst: axolotl v0.4.0 only
    assert all(len(cases) >= 20 for cases in [*GOLDEN["types"].values(), *GOLDEN["templates"].values()])


@pytest.mark.parametrize("name", sorted(GOLDEN["types"]))
def test_instruction_types_give_axolotls_tokens(name: str) -> None:
    rows = TYPE_ROWS.get(name, GOLDEN["rows"]["instruction"])
    for case in GOLDEN["types"][name]:
        ids, trained = ft_encode({"type": name}, rows[case["row"]])
        assert ids == golden(case), (name, case["row"])
        # Position 0 is never predicted: ft leaves it out of the loss (axolotl labels it for
        # completion and for an input_output row that starts with a trained segment).
        assert trained[1:] == case["trained"][1:], (name, case["row"])
        assert trained[0] == "0"


def _inference_prompt(name: str, row: dict[str, Any]) -> str:
    """The text inference gives the model before the first answer (the generation prompt)."""
    tok = tokenizer()
    messages = [Message(m["role"], m["content"]) for m in row["messages"]]
    first = next(i for i, m in enumerate(messages) if m.role == "assistant")
    fmt = chat_template_format(FtConfig(base_model="x", datasets=[{"path": "x"}]), name, tok)
    return on_golden_day(
        segments_text(fmt.render(messages[:first], special_tokens_of(tok), add_generation_prompt=True))
    )


@pytest.mark.parametrize("name", sorted(GOLDEN["templates"]))
def test_chat_templates_give_axolotls_tokens_but_where_documented(name: str) -> None:
    tok = tokenizer()
    dataset = {"type": "chat_template", "chat_template": name, "field_messages": "messages"}
    fmt = chat_template_format(FtConfig(base_model="x", datasets=[{"path": "x"}]), name, tok)
    terminator = tok.convert_tokens_to_ids(fmt.terminator(special_tokens_of(tok)))
    compared = 0
    for case in GOLDEN["templates"][name]:
        row = CHAT_ROWS[case["row"]]
        if "error" in case:  # the template refuses the conversation (gemma: a system turn): so does ft
            with pytest.raises(RenderError):
                ft_encode(dataset, row)
            continue
        compared += 1
        ids, trained = ft_encode(dataset, row)
        theirs = golden(case)
        assert tok.decode(ids) == tok.decode(theirs), (name, case["row"])  # the same text
        # The boundary rule: the first answer follows the ids inference gives the model, whenever
        # the template renders that prompt as the start of the conversation (most do; mistral_v2v3
        # moves the system prompt into the last user turn, qwen3 drops reasoning from history).
        prompt = _inference_prompt(name, row)
        if tok.decode(ids).startswith(prompt):
            prompt_ids = list(tok(prompt, add_special_tokens=False)["input_ids"])
            assert ids[: len(prompt_ids)] == prompt_ids, (name, case["row"])
        if ids != theirs:
            # Only where whitespace meets the boundary (a prompt ending in "\n\n", an answer starting
            # with spaces) do one piece and the rule's pieces differ; the text is the same.
            continue
        for position, mine in enumerate(trained):
            if mine == case["trained"][position]:
                continue
            assert (mine, case["trained"][position]) == ("1", "0"), (name, case["row"], position)
            is_terminator = ids[position] == terminator and terminator != tok.eos_token_id
            # Text between the generation prompt and the content (a space, <|START_RESPONSE|>): ft's
            # answer starts earlier, so these positions run up to one axolotl trains.
            run_end = next(
                (i for i in range(position, len(ids)) if trained[i] == case["trained"][i]), len(ids)
            )
            starts_answer = run_end < len(ids) and case["trained"][run_end] == "1"
            assert is_terminator or starts_answer, (name, case["row"], tok.decode([ids[position]]))
    assert compared >= 16, name


@pytest.mark.parametrize("conversation", sorted(GOLDEN["fastchat"]))
def test_legacy_sharegpt_conversations_render_fastchats_text(conversation: str) -> None:
    tok = tokenizer()
    template, default_system = CONVERSATIONS[conversation]
    fmt = chat_template_format(FtConfig(base_model="x", datasets=[{"path": "x"}]), template, tok)
    for case in GOLDEN["fastchat"][conversation]:
        messages = [Message(m["role"], m["content"]) for m in GOLDEN["rows"]["chat"][case["row"]]]
        if default_system and messages[0].role != "system":
            messages.insert(0, Message("system", default_system))  # as ft's mapping sets system_prompt
        text = segments_text(fmt.render(messages, special_tokens_of(tok)))
        expected = case["text"]
        if conversation == "llama-2":
            # FastChat leaves BOS to the tokenizer and writes ' </s><s>' after every answer; ft
            # writes BOS before every turn (the same tokens), and strips each message as Meta's
            # reference does (FastChat keeps an answer's leading spaces).
            expected = "<s>" + expected.removesuffix("<s>")
            messages = [Message(m.role, m.content.strip()) for m in messages]
            text = segments_text(fmt.render(messages, special_tokens_of(tok)))
            expected = re.sub(r"\[/INST\] \s+", "[/INST] ", expected)
        assert text == expected, (conversation, case["row"])
