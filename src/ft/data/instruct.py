"""axolotl's instruction-style dataset types: `alpaca:chat`, `oasst`, `alpaca_w_system.load_open_orca`,
`context_qa.load_v2`, ... with axolotl's exact strings (src/axolotl/prompters.py and
prompt_strategies/{alpaca_chat,alpaca_instruct,alpaca_w_system,context_qa,orcamini}.py).

Each type is a prompter (system prompts, system format, the turn format with and without an
input) and the columns it reads. A row becomes `prompt` + `answer` + EOS, the prompt untrained,
as axolotl's InstructionPromptTokenizingStrategy builds it; BOS only where the tokenizer adds it.
The config side knows the names from `ft.config.formats.INSTRUCTION_TYPES` (a test keeps the two
in step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ft.data.prompts import (
    ALPACA_PREAMBLE,
    ALPACA_PREAMBLE_INPUT,
    EndsAtEos,
    Message,
    RenderError,
    Segment,
    SpecialTokens,
    answer_segments,
    leading_bos,
    render_turns,
)
from ft.data.values import as_text

# The four prompt styles of axolotl's AlpacaPrompter: (turn with input, turn without, system format).
STYLES: dict[str, tuple[str, str, str]] = {
    "instruct": (
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        "### Instruction:\n{instruction}\n\n### Response:\n",
        "{system}\n\n",
    ),
    "chat": (
        "USER: {instruction}\n{input}\nASSISTANT:",
        "USER: {instruction}\nASSISTANT:",
        "SYSTEM: {system}\n",
    ),
    "chatml": (
        "<|im_start|>user\n{instruction}\n{input}<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\n{system}<|im_end|>\n",
    ),
    "phi": (
        "<|user|>\n{instruction}<|end|>{input}<|assistant|>",
        "<|user|>\n{instruction}<|end|>\n<|assistant|>\n",
        "<|system|>\n{system}<|end|>\n",
    ),
}
OPEN_ORCA_INSTRUCT = (
    "### Human:\n{instruction}\n### Additional Context:\n{input}\n### Assistant:\n",
    "### Human:\n{instruction}\n### Assistant:\n",
    "### System:\n{system}\n",
)
CHAT_CONCISE_INPUT = (
    "Below is an instruction from a USER that describes a task, paired with an input that provides further "
    "context. The ASSISTANT writes a response that concisely and appropriately completes the request.\n\n"
)
CHAT_CONCISE = (
    "Below is an instruction from a USER that describes a task. The ASSISTANT writes a response that "
    "appropriately and concisely completes the request.\n\n"
)
CONTEXT_QA = "Use the following contextual information to concisely answer the question.\n"
EXPLAIN_CHOICE = "Choose the answer that best answers the question. Explain your reasoning.\n"
CONCISE_CHOICE = "Choose the answer that best answers the question. Be concise in your response.\n\n"
TLDR = "USER: Summarize the following article as a TL;DR.\n"
NO_ANSWER = (
    "The context provided does not contain any information about your inquiry. "
    "Therefore, I'm unable to answer your question based on the given context."
)

Fields = Callable[[dict[str, Any]], tuple[str, str, str, str | None]]
"""A row's (instruction, input, answer, system); raises RenderError for a missing column."""


@dataclass(frozen=True)
class Prompter:
    """axolotl's prompter: the preambles (with and without an input) and the three formats."""

    system: str
    system_no_input: str
    turn: str
    turn_no_input: str
    system_format: str
    system_from_row: bool = False
    """alpaca_w_system / open_orca: the row's system prompt, formatted only when not empty."""

    def prompt(self, instruction: str, input_text: str, system: str | None) -> str:
        if self.system_from_row:
            head = self.system_format.format(system=system) if system else ""
        else:
            preamble = system if system is not None else (self.system if input_text else self.system_no_input)
            head = self.system_format.format(system=preamble) if preamble else ""
        # orcamini writes its (possibly empty) system prompt inside the turn.
        values = {"instruction": instruction, "input": input_text, "system": system or ""}
        return head + (self.turn if input_text else self.turn_no_input).format_map(values)


def _alpaca(style: str, system: str = ALPACA_PREAMBLE_INPUT, no_input: str = ALPACA_PREAMBLE) -> Prompter:
    turn, turn_no_input, system_format = STYLES[style]
    return Prompter(system, no_input, turn, turn_no_input, system_format)


def _with_system(style: str, formats: tuple[str, str, str] | None = None) -> Prompter:
    turn, turn_no_input, system_format = formats or STYLES[style]
    return Prompter("", "", turn, turn_no_input, system_format, system_from_row=True)


# ---------------------------------------------------------------------------------------------
# The columns each type reads (axolotl's parse_instruction_fields)


def column(row: dict[str, Any], name: str, required: bool = True) -> str:
    value = row.get(name)
    if value is None:
        if required:
            state = "is null" if name in row else "is missing"
            raise RenderError(f"field {name!r} {state} (columns: {', '.join(row) or 'none'})")
        return ""
    return as_text(value, f"field {name!r}")


def _columns(instruction: str, input_: str | None, answer: str, system: str | None = None) -> Fields:
    def read(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
        return (
            column(row, instruction),
            column(row, input_, required=False) if input_ else "",
            column(row, answer),
            column(row, system, required=False) if system else None,
        )

    return read


def _choices(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
    choices = row.get("choices")
    if not isinstance(choices, list):
        raise RenderError("field 'choices' is not a list")
    answer = column(row, "solution") if "solution" in row else column(row, "explanation")
    return column(row, "question"), "\n".join(f'- "{choice}"' for choice in choices), answer, None


def _context_qa(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
    return column(row, "article") + "\n===\n" + column(row, "question"), "", column(row, "answer"), None


def _context_404(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
    return column(row, "article") + "\n===\n" + column(row, "unanswerable_question"), "", NO_ANSWER, None


def _context_v2(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
    prompt = "Context: " + column(row, "context") + "\nQuestion: " + column(row, "question") + "\n"
    return prompt, "", "Answer: " + column(row, "answer"), None


def _jeopardy(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
    return column(row, "question"), column(row, "category"), "what is " + column(row, "answer"), None


@dataclass(frozen=True)
class InstructionType(EndsAtEos):
    """One of axolotl's instruction dataset types: a prompter and the columns it reads."""

    name: str
    prompter: Prompter
    fields: Fields | None = field(default=None, compare=False)
    """None: the dataset's field_instruction / field_input / field_output columns (alpaca's)."""

    def render_row(self, row: dict[str, Any], columns: Fields, tokens: SpecialTokens) -> list[Segment]:
        instruction, input_text, answer, system = (self.fields or columns)(row)
        if not answer.strip():
            raise RenderError("the answer is empty")
        prompt = self.prompter.prompt(instruction, input_text, system)
        return [*leading_bos(tokens), Segment(prompt), *answer_segments(answer, tokens)]

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        """A conversation, each user turn as an instruction without input (for chat and generate)."""

        def prompt(index: int, user: str, system: str | None) -> str:
            if index and not self.prompter.system_from_row:
                # Only the first turn carries the preamble.
                return self.prompter.turn_no_input.format_map({"instruction": user, "system": ""})
            return self.prompter.prompt(user, "", system if index == 0 else None)

        return render_turns(messages, tokens, add_generation_prompt, prompt)


def _family(base: str, make: Callable[[str], Prompter], fields: Fields | None) -> dict[str, InstructionType]:
    """`base` and `base:<style>` for each of the four prompt styles (`alpaca:chat`, `oasst:chatml`, ...)."""
    types = {base: InstructionType(base, make("instruct"), fields)}
    for style in STYLES:
        types[f"{base}:{style}"] = InstructionType(f"{base}:{style}", make(style), fields)
    return types


def _concise_choice(style: str) -> Prompter:
    # Its own turn formats whatever the style, and AlpacaPrompter's class-level system format.
    return Prompter(CONCISE_CHOICE, CONCISE_CHOICE, *STYLES["chat"][:2], "{system}")


def _tldr(style: str) -> Prompter:
    return Prompter(
        "", "", TLDR + "{instruction}\n{input}\nASSISTANT:", TLDR + "{instruction}\nASSISTANT:", ""
    )


INSTRUCTION_TYPES: dict[str, InstructionType] = {
    **_family("alpaca", _alpaca, None),
    **_family("jeopardy", _alpaca, _jeopardy),
    **_family("oasst", _alpaca, _columns("INSTRUCTION", None, "RESPONSE")),
    **_family("gpteacher", _alpaca, _columns("instruction", "input", "response")),
    **_family("explainchoice", lambda s: _alpaca(s, EXPLAIN_CHOICE, EXPLAIN_CHOICE), _choices),
    **_family("concisechoice", _concise_choice, _choices),
    **_family("summarizetldr", _tldr, _columns("article", None, "summary")),
}
# Plain `alpaca` is ft's own Alpaca format (the same strings, and the row's system prompt).
del INSTRUCTION_TYPES["alpaca"]
INSTRUCTION_TYPES.update(
    {
        name: InstructionType(name, prompter, fields)
        for name, prompter, fields in (
            ("alpaca_chat", _alpaca("chat"), None),
            ("alpaca_chat.load_concise", _alpaca("chat", CHAT_CONCISE_INPUT, CHAT_CONCISE), None),
            (
                "alpaca_chat.load_qa",
                _alpaca("chat", CHAT_CONCISE_INPUT, CHAT_CONCISE),
                _columns("question", None, "answer"),
            ),
            (
                "alpaca_chat.load_camel_ai",
                _alpaca("chat", CHAT_CONCISE_INPUT, CHAT_CONCISE),
                _columns("message_1", None, "message_2"),
            ),
            ("alpaca_chat.load_no_prompt", _alpaca("chat", "", ""), None),
            ("alpaca_instruct", _alpaca("instruct"), None),
            ("alpaca_instruct.load_no_prompt", _alpaca("instruct", "", ""), None),
            ("alpaca_w_system", _with_system("chat"), _columns("instruction", "input", "output", "system")),
            (
                "alpaca_w_system.load_chat",
                _with_system("chat"),
                _columns("instruction", "input", "output", "system"),
            ),
            (
                "alpaca_w_system.load_instruct",
                _with_system("instruct"),
                _columns("instruction", "input", "output", "system"),
            ),
            (
                "alpaca_w_system.load_open_orca",
                _with_system("instruct", OPEN_ORCA_INSTRUCT),
                _columns("question", None, "response", "system_prompt"),
            ),
            (
                "alpaca_w_system.load_open_orca_chatml",
                _with_system("chatml"),
                _columns("question", None, "response", "system_prompt"),
            ),
            ("context_qa", _alpaca("chat", CONTEXT_QA, CONTEXT_QA), _context_qa),
            ("context_qa.load_404", _alpaca("chat", CONTEXT_QA, CONTEXT_QA), _context_404),
            (
                "context_qa.load_v2",
                Prompter("", "", "{instruction}\n{input}", "{instruction}", "{system}"),
                _context_v2,
            ),
            (
                "orcamini",
                Prompter(
                    "",
                    "",
                    "",
                    "### System:\n{system}\n\n### User:\n{instruction}\n\n### Response:\n",
                    "",
                    system_from_row=True,
                ),
                _columns("question", None, "response", "system_prompt"),
            ),
        )
    }
)
