"""Make the golden fixtures of tests/test_axolotl_golden.py with axolotl's own prompters.

Runs in a separate virtual environment OUTSIDE the repository, holding axolotl and what its prompt
strategies import (axolotl 0.20+ declares Python 3.12; with --no-deps its prompters import on 3.11):

    python3.11 -m venv /work/wt/axolotl-venv
    /work/wt/axolotl-venv/bin/pip install torch==2.13.0
    /work/wt/axolotl-venv/bin/pip install --no-deps --ignore-requires-python axolotl fschat
    /work/wt/axolotl-venv/bin/pip install -c constraints.txt transformers datasets pydantic addict \\
        colorama accelerate
    /work/wt/axolotl-venv/bin/python tests/golden/make_axolotl_golden.py

It writes, beside this file:
- `tokenizer/`: the test tokenizer (byte-level BPE, BOS added on encode like Llama's, and every
  special token axolotl's chat templates write), built here from a fixed corpus;
- `axolotl.json.gz`: for each instruction dataset type, each chat template, `input_output` and
  `completion`: 20+ rows and the `input_ids` and trained positions axolotl's strategy gives them;
  and for each FastChat conversation that axolotl's legacy `type: sharegpt` used, the text
  FastChat renders.
Rows are generated from a seed; some answers start with whitespace or a newline (the boundary
case), some rows have an input, a system prompt, several turns or non-ASCII text.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROWS = 24
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "what",
    "is",
    "capital",
    "of",
    "france",
    "paris",
    "hello",
    "how",
    "are",
    "you",
    "today",
    "give",
    "three",
    "tips",
    "for",
    "staying",
    "healthy",
    "eat",
    "well",
    "sleep",
    "exercise",
    "translate",
    "good",
    "morning",
    "bonjour",
    "summarize",
    "this",
    "text",
    "in",
    "one",
    "sentence",
    "answer",
    "question",
    "context",
    "article",
    "code",
    "python",
    "function",
    "return",
    "value",
    "list",
    "sort",
    "number",
    "please",
    "explain",
    "why",
    "sky",
    "blue",
    "light",
    "scatters",
    "write",
    "poem",
    "about",
    "sea",
]
ODD_ANSWERS = [
    "  indented answer",
    "\nstarts on a new line",
    " one leading space",
    "café au lait, 日本語",
    "```\ncode()\n```",
]

# ft's list of axolotl's instruction types (ft.config.formats imports nothing but the standard library).
sys.path.insert(0, str(HERE.parent.parent / "src"))
from ft.config.formats import INSTRUCTION_TYPES as FT_INSTRUCTION_TYPES  # noqa: E402

INSTRUCTION_TYPES = [*FT_INSTRUCTION_TYPES, "alpaca"]
FASTCHAT = ("vicuna_v1.1", "zephyr", "mistral", "llama-2", "chatml")


def words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def answer(rng: random.Random, index: int) -> str:
    return ODD_ANSWERS[index % len(ODD_ANSWERS)] if index % 3 == 0 else words(rng, 2, 12)


def instruction_row(rng: random.Random, index: int) -> dict[str, Any]:
    text = answer(rng, index)
    with_input = index % 2 == 1
    return {
        "instruction": words(rng, 3, 10),
        "input": words(rng, 2, 8) if with_input else "",
        "output": text,
        "response": text,
        "answer": text,
        "summary": text,
        "solution": text,
        "RESPONSE": text,
        "message_2": text,
        "question": words(rng, 3, 9) + "?",
        "INSTRUCTION": words(rng, 3, 9),
        "message_1": words(rng, 3, 9),
        "category": words(rng, 1, 3),
        "article": words(rng, 8, 20),
        "context": words(rng, 8, 20),
        "unanswerable_question": words(rng, 3, 9) + "?",
        "choices": [words(rng, 1, 3) for _ in range(rng.randint(2, 4))],
        "system": words(rng, 3, 8) if index % 4 else "",
        "system_prompt": words(rng, 3, 8) if index % 4 else "",
    }


def conversation(rng: random.Random, index: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": words(rng, 3, 8)}] if index % 3 == 1 else []
    for turn in range(1 + index % 2):
        messages.append({"role": "user", "content": words(rng, 3, 10)})
        messages.append({"role": "assistant", "content": answer(rng, index + turn)})
    return messages


def template_tokens(text: str) -> set[str]:
    """The special-token-like strings a template writes: <|x|>, <x_y>, [INST], <｜x｜>, [|x|]."""
    patterns = (
        r"<\|[A-Za-z0-9_]+\|>",
        r"<[a-z_]+_of_[a-z_]+>",
        r"<[a-z]+_turn>",
        r"\[/?[A-Z_]+\]",
        r"<｜[^｜]+｜>",
        r"\[\|[a-z]+\|\]",
        r"<[a-z]+\|>",
    )
    return {m for p in patterns for m in re.findall(p, text)}


def build_tokenizer(templates: dict[str, str], corpus: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<s>",
        "</s>",
        "<unk>",
        *sorted(set().union(*map(template_tokens, templates.values())) - {"<s>", "</s>"}),
    ]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=specials[3:],
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )
    folder = HERE / "tokenizer"
    tokenizer.save_pretrained(folder)
    return tokenizer


def record(result: dict[str, Any], row: int, **extra: Any) -> dict[str, Any]:
    """One row's result: its index in the rows, the ids, and which positions are trained."""
    ids, labels = list(result["input_ids"]), list(result["labels"])
    assert all(label in (-100, token) for token, label in zip(ids, labels, strict=False)), (
        "labels are ids or -100"
    )
    trained = "".join("0" if label == -100 else "1" for label in labels)
    return {"row": row, "input_ids": " ".join(map(str, ids)), "trained": trained, **extra}


def instruction_strategy(name: str, tokenizer: Any, cfg: Any) -> Any:
    """axolotl's dispatch (utils/data/wrappers.py): a registered strategy module, else a base type."""
    from axolotl import prompt_tokenizers as pt
    from axolotl import prompters as pr
    from axolotl.prompt_strategies import load
    from axolotl.utils.dict import DictDefault

    strategy = load(name, tokenizer, cfg, DictDefault({"path": "x", "type": name}))
    if strategy is not None:
        return strategy
    base, _, style = name.partition(":")
    handlers = {
        "alpaca": (pr.AlpacaPrompter, pt.AlpacaPromptTokenizingStrategy),
        "explainchoice": (pr.MultipleChoiceExplainPrompter, pt.AlpacaMultipleChoicePromptTokenizingStrategy),
        "concisechoice": (pr.MultipleChoiceConcisePrompter, pt.AlpacaMultipleChoicePromptTokenizingStrategy),
        "summarizetldr": (pr.SummarizeTLDRPrompter, pt.SummarizeTLDRPromptTokenizingStrategy),
        "jeopardy": (pr.JeopardyPrompter, pt.JeopardyPromptTokenizingStrategy),
        "oasst": (pr.AlpacaPrompter, pt.OpenAssistantPromptTokenizingStrategy),
        "gpteacher": (pr.GPTeacherPrompter, pt.GPTeacherPromptTokenizingStrategy),
    }
    prompter, strategy_cls = handlers[base]
    return strategy_cls(prompter(style or None), tokenizer, cfg.train_on_inputs, cfg.sequence_len)


def main() -> None:
    from axolotl.prompt_strategies import load
    from axolotl.utils.chat_templates import _CHAT_TEMPLATES
    from axolotl.utils.dict import DictDefault

    rng = random.Random(20260724)
    inst_rows = [instruction_row(rng, i) for i in range(ROWS)]
    chats = [conversation(rng, i) for i in range(ROWS)]
    corpus = [v for row in inst_rows for v in row.values() if isinstance(v, str)]
    corpus += [m["content"] for chat in chats for m in chat] + ["\n  x\n\n\n ### Response:\n  y\n "] * 20
    tokenizer = build_tokenizer(_CHAT_TEMPLATES, corpus)
    cfg = DictDefault({"sequence_len": 8192, "train_on_inputs": False, "dataset_num_proc": 1})
    out: dict[str, Any] = {
        "axolotl": version("axolotl"),
        "transformers": version("transformers"),
        "rows": {"instruction": inst_rows, "chat": chats},
        "types": {},
        "templates": {},
    }
    for name in INSTRUCTION_TYPES:
        strategy = instruction_strategy(name, tokenizer, cfg)
        out["types"][name] = [record(strategy.tokenize_prompt(row), i) for i, row in enumerate(inst_rows)]
    io_rows = [
        {
            "segments": [
                {"text": "<s>" + words(rng, 2, 6) + "\n", "label": False},
                {"text": answer(rng, i) + "</s>", "label": True},
                *([{"text": "\n" + words(rng, 1, 4), "label": False}] if i % 2 else []),
            ]
        }
        for i in range(ROWS)
    ]
    strategy = load("input_output", tokenizer, cfg, DictDefault({"path": "x", "type": "input_output"}))
    out["rows"]["input_output"] = io_rows
    out["types"]["input_output"] = [record(strategy.tokenize_prompt(row), i) for i, row in enumerate(io_rows)]
    strategy = load("completion", tokenizer, cfg, DictDefault({"path": "x", "type": "completion"}))
    completion_rows = [{"text": words(rng, 5, 30)} for _ in range(ROWS)]
    out["rows"]["completion"] = completion_rows
    out["types"]["completion"] = [
        record({k: v[0] for k, v in strategy.tokenize_prompt({"text": [row["text"]]}).items()}, i)
        for i, row in enumerate(completion_rows)
    ]
    for name in sorted(_CHAT_TEMPLATES):
        template_cfg = DictDefault({"sequence_len": 8192, "train_on_inputs": False, "chat_template": name})
        strategy = load(
            "chat_template", tokenizer, template_cfg, {"type": "chat_template", "field_messages": "messages"}
        )
        cases = []
        for index, chat in enumerate(chats):
            try:
                cases.append(record(strategy.tokenize_prompt({"messages": chat}), index))
            except Exception as err:  # a template that refuses a system turn
                cases.append({"row": index, "error": str(err)})
        out["templates"][name] = cases
    out["fastchat"] = fastchat_texts(chats)
    text = json.dumps(out, ensure_ascii=False, sort_keys=True).encode()
    (HERE / "axolotl.json.gz").write_bytes(gzip.compress(text, mtime=0))  # the same bytes on every run
    print(f"wrote {HERE / 'axolotl.json.gz'}: {len(out['types'])} types, {len(out['templates'])} templates")


def fastchat_texts(chats: list[list[dict[str, str]]]) -> dict[str, Any]:
    """FastChat's rendering of each conversation, with chatml as axolotl registered it."""
    from fastchat.conversation import Conversation, SeparatorStyle, get_conv_template, register_conv_template

    register_conv_template(
        Conversation(
            name="chatml",
            system_template="<|im_start|>system\n{system_message}",
            system_message="You are a helpful assistant.",
            roles=("<|im_start|>user", "<|im_start|>assistant"),
            sep_style=SeparatorStyle.CHATML,
            sep="<|im_end|>",
        ),
        override=True,
    )
    texts: dict[str, Any] = {}
    for name in FASTCHAT:
        texts[name] = []
        for chat in chats:
            conv = get_conv_template(name)
            turns = chat
            if chat[0]["role"] == "system":
                conv.set_system_message(chat[0]["content"])
                turns = chat[1:]
            for message in turns:
                conv.append_message(conv.roles[0 if message["role"] == "user" else 1], message["content"])
            texts[name].append({"row": len(texts[name]), "text": conv.get_prompt()})
    return texts


if __name__ == "__main__":
    main()
