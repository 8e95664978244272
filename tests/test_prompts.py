"""Golden tests: the exact strings of DESIGN.md, token ids and labels for each format, the saved
Jinja templates rendering the same text, and no double BOS."""

from __future__ import annotations

import pytest

from ft.base.errors import FtError
from ft.config.formats import CHAT_TEMPLATES, PROMPT_FORMATS, custom_format_problems
from ft.data.jinja import TokenizerTemplate
from ft.data.prompts import (
    FORMATS,
    CustomFormat,
    Message,
    RenderError,
    Segment,
    answer_segments,
    get_format,
    segments_text,
    special_tokens_of,
)
from ft.data.tokens import IGNORE_INDEX, encode_segments

SYSTEM = Message("system", "Be brief.")
ONE_TURN = [Message("user", "What is 2+2?"), Message("assistant", "4")]
TWO_TURNS = [SYSTEM, *ONE_TURN, Message("user", "And 3+3?"), Message("assistant", "6")]

GOLDEN_TEXT = {
    "alpaca": (
        "<s>Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n4</s>"
    ),
    "llama2_chat": "<s>[INST] What is 2+2? [/INST] 4 </s>",
    "phi2": "<s>Instruct: What is 2+2?\nOutput: 4</s>",
    "phi3": "<s><|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4<|end|>\n",
}
GOLDEN_TWO_TURNS = {
    "alpaca": (
        "<s>Be brief.\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n4</s>"
        "### Instruction:\nAnd 3+3?\n\n### Response:\n6</s>"
    ),
    "llama2_chat": (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST] 6 </s>"
    ),
    "phi2": "<s>Be brief.\nInstruct: What is 2+2?\nOutput: 4</s>Instruct: And 3+3?\nOutput: 6</s>",
    "phi3": (
        "<s><|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4<|end|>\n"
        "<|user|>\nAnd 3+3?<|end|>\n<|assistant|>\n6<|end|>\n"
    ),
}
# Tokens of the one-turn example with the tiny tokenizer; "+" marks a trained token.
GOLDEN_TOKENS = {
    "llama2_chat": "<s> [ INST ] Ġ Wh at Ġis Ġ 2 + 2 ? Ġ[ / INST ] +Ġ +4 +Ġ +</s>",
    "phi2": "<s> I n struct : Ġ Wh at Ġis Ġ 2 + 2 ? Ċ Out put : +Ġ +4 +</s>",
    "phi3": "<s> <|user|> Ċ Wh at Ġis Ġ 2 + 2 ? <|end|> Ċ <|assistant|> Ċ +4 +<|end|> Ċ",
    "alpaca_tail": "### Ġ Response : Ċ +4 +</s>",
}


def marked_tokens(tokenizer, segments: list[Segment], train_on_inputs: bool = False) -> str:
    encoded = encode_segments(tokenizer, segments, train_on_inputs)
    pieces = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    return " ".join(
        ("+" if label != IGNORE_INDEX else "") + piece
        for piece, label in zip(pieces, encoded.labels, strict=True)
    )


@pytest.fixture
def tokens(tiny_tokenizer):
    return special_tokens_of(tiny_tokenizer)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_one_turn_text_is_exact(name, tokens):
    assert segments_text(get_format(name).render(ONE_TURN, tokens)) == GOLDEN_TEXT[name]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_two_turns_with_system_text_is_exact(name, tokens):
    assert segments_text(get_format(name).render(TWO_TURNS, tokens)) == GOLDEN_TWO_TURNS[name]


@pytest.mark.parametrize("name", ["llama2_chat", "phi2", "phi3"])
def test_tokens_and_labels_are_exact(name, tiny_tokenizer, tokens):
    assert marked_tokens(tiny_tokenizer, get_format(name).render(ONE_TURN, tokens)) == GOLDEN_TOKENS[name]


def test_alpaca_trains_only_the_answer_and_eos(tiny_tokenizer, tokens):
    marked = marked_tokens(tiny_tokenizer, get_format("alpaca").render(ONE_TURN, tokens))
    assert marked.startswith("<s> Bel ow")
    assert marked.endswith(GOLDEN_TOKENS["alpaca_tail"])
    assert sum(1 for piece in marked.split() if piece.startswith("+") and piece != "+") == 2


def test_multi_turn_trains_every_assistant_turn_only(tiny_tokenizer, tokens):
    encoded = encode_segments(tiny_tokenizer, get_format("phi3").render(TWO_TURNS, tokens))
    trained = [i for i in encoded.labels if i != IGNORE_INDEX]
    assert tiny_tokenizer.decode(trained) == "4<|end|>6<|end|>"


def test_train_on_inputs_trains_everything_but_the_first_token(tiny_tokenizer, tokens):
    encoded = encode_segments(
        tiny_tokenizer, get_format("phi2").render(ONE_TURN, tokens), train_on_inputs=True
    )
    assert encoded.labels[0] == IGNORE_INDEX
    assert encoded.labels[1:] == encoded.input_ids[1:]


def test_alpaca_with_input_uses_the_input_preamble(tokens):
    alpaca = get_format("alpaca")
    segments = alpaca.render_instruction("Translate.", "good morning", None, tokens)
    assert segments_text(segments) == (
        "<s>Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate."
        "\n\n### Input:\ngood morning\n\n### Response:\n"
    )


def test_llama2_strips_contents_and_requires_alternating_roles(tokens):
    llama2 = get_format("llama2_chat")
    text = segments_text(llama2.render([Message("user", "  hi \n"), Message("assistant", "\nyo ")], tokens))
    assert text == "<s>[INST] hi [/INST] yo </s>"
    with pytest.raises(RenderError, match="turn 2 is 'user'"):
        llama2.render([Message("user", "a"), Message("user", "b")], tokens)
    with pytest.raises(RenderError, match="ends with a user turn"):
        llama2.render([Message("user", "a")], tokens)


def test_generation_prompt_is_the_training_prompt(tokens):
    for name, fmt in FORMATS.items():
        prompt = segments_text(fmt.render(ONE_TURN[:1], tokens, add_generation_prompt=True))
        assert GOLDEN_TEXT[name].startswith(prompt), name
        assert not prompt.endswith(" "), name  # the answer's first token carries its space


def test_custom_format_with_and_without_input(tokens):
    fmt = CustomFormat("Q: {instruction}\nC: {input}\nA: ", "Q: {instruction}\nA: ")
    assert fmt.prompt("why?", "ctx", None) == "Q: why?\nC: ctx\nA: "
    assert fmt.prompt("why?", "", None) == "Q: why?\nA: "
    assert custom_format_problems("{instruction} {answer}") == [
        "unknown field {answer}: use {input}, {instruction}, {system}"
    ]
    assert custom_format_problems("{instruction") and not custom_format_problems("{{x}} {input}")


def test_config_names_match_the_format_registry():
    """The schema checks names from ft.config.formats; each must render here, and each format be nameable."""
    from ft.data.instruct import INSTRUCTION_TYPES
    from ft.data.jinja import template_names

    assert set(PROMPT_FORMATS) == {
        *FORMATS,
        "completion",
        "chat_template",
        "input_output",
        *INSTRUCTION_TYPES,
    }
    assert set(CHAT_TEMPLATES) == {*template_names(), *FORMATS, "tokenizer_default", "jinja"}


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(FtError) as err:
        get_format("chatml")
    assert "alpaca" in (err.value.hint or "")


@pytest.mark.parametrize("messages", [ONE_TURN, TWO_TURNS], ids=["one-turn", "two-turns"])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_saved_jinja_template_renders_the_training_format(name, messages, tiny_model_dir, tmp_path):
    """What plain transformers renders from the saved tokenizer equals what ft trained on."""
    from transformers import AutoTokenizer

    from ft.config.load import load_config

    config = tmp_path / "c.yml"
    # The dataset type names ft's format (as a chat template, `alpaca` is axolotl's Jinja template).
    config.write_text(f"base_model: {tiny_model_dir}\ndatasets: [{{path: x.jsonl, type: {name}}}]\n")
    cfg = load_config(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    from ft.data.chat_templates import chat_template_jinja

    tokenizer.chat_template = chat_template_jinja(cfg, tokenizer)
    tokens = special_tokens_of(tokenizer)
    segments = get_format(name).render(messages, tokens)
    rows = [{"role": m.role, "content": m.content} for m in messages]
    assert tokenizer.apply_chat_template(rows, tokenize=False) == segments_text(segments)
    ids = tokenizer.apply_chat_template(rows, tokenize=True, return_dict=True)["input_ids"]
    assert list(ids) == encode_segments(tokenizer, segments).input_ids
    prompt = tokenizer.apply_chat_template(rows[:-1], tokenize=False, add_generation_prompt=True)
    assert prompt == segments_text(get_format(name).render(messages[:-1], tokens, add_generation_prompt=True))


CHATML = (
    "{% for m in messages %}{{ '<|user|>' if m['role'] == 'user' else '<|assistant|>' }}"
    "{{ m['content'] + '</s>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def test_tokenizer_template_trains_answers_through_the_terminator(tiny_tokenizer, tokens):
    tiny_tokenizer.chat_template = CHATML
    try:
        fmt = TokenizerTemplate(tiny_tokenizer)
        segments = fmt.render(TWO_TURNS[1:], tokens)
        assert (
            segments_text(segments)
            == "<|user|>What is 2+2?</s>\n<|assistant|>4</s>\n<|user|>And 3+3?</s>\n<|assistant|>6</s>\n"
        )
        assert [s.text for s in segments if s.trained] == ["4</s>", "6</s>"]
        encoded = encode_segments(tiny_tokenizer, segments)
        assert tiny_tokenizer.decode([i for i in encoded.labels if i != IGNORE_INDEX]) == "4</s>6</s>"
        assert (
            encoded.input_ids
            == tiny_tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in TWO_TURNS[1:]],
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
    finally:
        tiny_tokenizer.chat_template = None


def sentencepiece_like_tokenizer():
    """A Llama-style tokenizer: Metaspace pre-tokenizer that prepends '▁' to the first word of a text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers import decoders as dec
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Newlines are pieces of their own, as in Llama's SentencePiece model (<0x0A>).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
        ]
    )
    tok.decoder = dec.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(
        ["### Instruction:\nWhat is the answer?\n\n### Response:\nfour five"] * 10, trainer=trainer
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_sentencepiece_answer_has_no_stray_prefix_token():
    """Tokenized on its own, an answer after a newline would start with an extra '▁' (the model would
    learn to emit it); ft labels the joint encoding instead, which is what inference sees."""
    tokenizer = sentencepiece_like_tokenizer()
    tokens = special_tokens_of(tokenizer)
    segments = CustomFormat("### Instruction:\n{instruction}\n\n### Response:\n").render(
        [Message("user", "What is the answer?"), Message("assistant", "four")], tokens
    )
    encoded = encode_segments(tokenizer, segments)
    joint = tokenizer(segments_text(segments[:-1]), add_special_tokens=False)["input_ids"]
    assert encoded.input_ids == [*joint, tokenizer.eos_token_id]
    trained = [i for i in encoded.labels if i != IGNORE_INDEX]
    assert tokenizer.convert_ids_to_tokens(trained) == ["four", "</s>"]
    # What tokenizing the answer on its own gives: a stray '▁' piece first.
    assert tokenizer.convert_ids_to_tokens(tokenizer("four", add_special_tokens=False)["input_ids"]) == [
        "▁",
        "four",
    ]


def test_a_token_across_the_prompt_answer_boundary_is_trained(tiny_tokenizer):
    """Labels come from character offsets: a token that starts in the prompt and ends in the answer
    is trained, so no answer character leaves the loss."""
    from ft.data.tokens import _labels_by_offset

    run = [Segment("ab"), Segment("cd", trained=True), Segment("ef")]
    offsets = [(0, 1), (1, 3), (3, 4), (4, 6)]
    assert _labels_by_offset(run, [1, 2, 3, 4], offsets) == [IGNORE_INDEX, 2, 3, IGNORE_INDEX]


def test_a_dataset_level_chat_template_is_the_saved_one(tiny_model_dir, tmp_path, tiny_tokenizer):
    from ft.config.load import load_config
    from ft.data.renderers import renderer_for_config

    config = tmp_path / "c.yml"
    config.write_text(
        f"base_model: {tiny_model_dir}\ndatasets: [{{path: x.jsonl, type: chat_template, chat_template: phi3}}]\n"
    )
    assert renderer_for_config(load_config(config), tiny_tokenizer).name == "phi3"


# ---------------------------------------------------------------------------------------------
# The boundary rule: the training prompt is the prompt inference encodes


def golden_tokenizer():
    """A byte-level BPE with GPT-2's pre-tokenizer, "\\n " and "\\n\\n" tokens among its merges."""
    from pathlib import Path

    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(__file__).parent / "golden" / "tokenizer")


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("### Response:\n", "  indented"),  # one piece: "\n " + " indented"
        ("Question:\n\n", "Answer"),  # one piece: "\n", "\n"; the prompt alone ends in "\n\n"
        ("### Response:\n", "plain"),  # no whitespace at the boundary: one piece is the same
    ],
)
def test_the_training_prompt_is_encoded_as_inference_encodes_it(prompt: str, answer: str) -> None:
    from ft.data.examples import render_instruction

    tokenizer = golden_tokenizer()
    tokens = special_tokens_of(tokenizer)
    fmt = CustomFormat(prompt.replace("Question", "{instruction}").replace("### Response", "{instruction}"))
    train = encode_segments(
        tokenizer, render_instruction(fmt, prompt.split(":")[0], "", None, tokens, answer)
    )
    infer = encode_segments(tokenizer, render_instruction(fmt, prompt.split(":")[0], "", None, tokens))
    first = next(i for i, label in enumerate(train.labels) if label != IGNORE_INDEX)
    assert train.input_ids[:first] == infer.input_ids  # what generation feeds the model
    assert tokenizer.decode(train.input_ids[first:]) == answer + tokenizer.eos_token
    one_piece = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    assert (one_piece == train.input_ids[1:-1]) == (answer == "plain")  # the rule matters exactly there


def test_a_sentencepiece_answer_continues_without_a_stray_prefix_after_a_space() -> None:
    tokenizer = sentencepiece_like_tokenizer()
    tokens = special_tokens_of(tokenizer)
    segments = [Segment("### Instruction:\nWhat is the answer?"), *answer_segments(" four five", tokens)]
    encoded = encode_segments(tokenizer, segments)
    joint = tokenizer("### Instruction:\nWhat is the answer? four five", add_special_tokens=False)[
        "input_ids"
    ]
    assert encoded.input_ids == [*joint, tokenizer.eos_token_id]
