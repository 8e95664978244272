"""Prompt formats: a small closed registry that turns a conversation into text segments.

A format renders `Message`s into `Segment`s: pieces of text, each marked trained or not, and
the special tokens (BOS, EOS, a turn terminator) kept apart so that they become exactly one
token id and are never spelled out of user text. `ft.data.tokens.encode_segments` turns the
segments into `input_ids` and `labels`; `ft format` shows the same segments. One function owns
the format and the mask, so what is previewed is what is trained.

Where a prompt ends in a space before the answer (llama2_chat's `[/INST] `, phi2's `Output: `),
the space belongs to the answer segment: the prompt given at inference time then ends where
the training prompt ended, and the model learns the answer's first token with its space.

The exact strings are those of DESIGN.md. Alpaca uses axolotl's form: a newline after
`### Response:` (Stanford's original has none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ft.base.errors import FtError

Role = Literal["system", "user", "assistant"]
Special = Literal["bos", "eos", "end"]
"""bos / eos: the tokenizer's own tokens; end: phi-3's `<|end|>` turn terminator."""

PHI3_END = "<|end|>"


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Segment:
    """A piece of the rendered example. `special` segments are one token whose text is `text`."""

    text: str
    trained: bool = False
    special: Special | None = None
    separate: bool = False
    """Tokenized on its own, not with its neighbours (input_output's segments, as axolotl does)."""


class RenderError(ValueError):
    """A conversation this format cannot render (a bad row, not a bug): the message is the reason."""


@dataclass(frozen=True)
class SpecialTokens:
    """The token strings a format writes for its special segments, read from the tokenizer."""

    bos: str | None
    eos: str
    adds_bos: bool
    """Whether the tokenizer puts BOS in front of an encoded text (Llama does, GPT-2 does not)."""

    def text(self, special: Special) -> str:
        if special == "bos":
            return self.bos or ""
        if special == "eos":
            return self.eos
        return PHI3_END


class ChatFormat(Protocol):
    @property
    def name(self) -> str: ...

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]: ...

    def terminator(self, tokens: SpecialTokens) -> str: ...


ALPACA_PREAMBLE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)
ALPACA_PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def _special(name: Special, tokens: SpecialTokens, trained: bool = False) -> Segment:
    return Segment(tokens.text(name), trained=trained, special=name)


def answer_segments(text: str, tokens: SpecialTokens) -> list[Segment]:
    """A trained answer and the trained EOS after it."""
    return [Segment(text, trained=True), _special("eos", tokens, trained=True)]


def leading_bos(tokens: SpecialTokens) -> list[Segment]:
    return [_special("bos", tokens)] if tokens.adds_bos and tokens.bos else []


def split_system(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """The system prompt (first message only) and the user/assistant turns, which must alternate."""
    system = None
    turns = list(messages)
    if turns and turns[0].role == "system":
        system = turns[0].content
        turns = turns[1:]
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message.role != expected:
            raise RenderError(
                f"turn {index + 1} is {message.role!r} where {expected!r} was expected "
                "(one optional system message first, then user and assistant alternating)"
            )
    return system, turns


def turn_pairs(
    messages: Sequence[Message], add_generation_prompt: bool
) -> tuple[str | None, list[tuple[str, str | None]]]:
    """The system prompt and (user, answer) pairs; the last answer is None when generating.

    Raises RenderError when the roles do not alternate or the ending does not fit the purpose.
    """
    system, turns = split_system(messages)
    pairs = [
        (turns[i].content, turns[i + 1].content if i + 1 < len(turns) else None)
        for i in range(0, len(turns), 2)
    ]
    if not pairs:
        raise RenderError("no user turn")
    last_answer = pairs[-1][1]
    if add_generation_prompt and last_answer is not None:
        raise RenderError("the conversation ends with an assistant turn: nothing to generate")
    if not add_generation_prompt and last_answer is None:
        raise RenderError("the conversation ends with a user turn: no answer to train on")
    return system, pairs


def render_turns(
    messages: Sequence[Message],
    tokens: SpecialTokens,
    add_generation_prompt: bool,
    prompt_of: Callable[[int, str, str | None], str],
) -> list[Segment]:
    """BOS where the tokenizer adds one, then each turn's prompt (`prompt_of(index, user, system)`,
    untrained) and its answer with EOS (trained)."""
    system, pairs = turn_pairs(messages, add_generation_prompt)
    segments = leading_bos(tokens)
    for index, (user, answer) in enumerate(pairs):
        segments.append(Segment(prompt_of(index, user, system)))
        if answer is not None:
            segments += answer_segments(answer, tokens)
    return segments


class EndsAtEos:
    """Formats whose turns end with the tokenizer's EOS (all but phi3)."""

    def terminator(self, tokens: SpecialTokens) -> str:
        return tokens.eos


@dataclass(frozen=True)
class Alpaca(EndsAtEos):
    """Stanford Alpaca, axolotl's form. A system prompt replaces the preamble sentence."""

    name: str = "alpaca"

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        def prompt(index: int, user: str, system: str | None) -> str:
            preamble = (system if system is not None else ALPACA_PREAMBLE) + "\n\n" if index == 0 else ""
            return f"{preamble}### Instruction:\n{user}\n\n### Response:\n"

        return render_turns(messages, tokens, add_generation_prompt, prompt)

    def render_instruction(
        self, instruction: str, input_text: str, system: str | None, tokens: SpecialTokens
    ) -> list[Segment]:
        """The single-turn prompt with an input block (the input is not empty)."""
        preamble = system if system is not None else ALPACA_PREAMBLE_INPUT
        text = f"{preamble}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input_text}\n\n### Response:\n"
        return [*leading_bos(tokens), Segment(text)]


@dataclass(frozen=True)
class Llama2Chat(EndsAtEos):
    """Meta's reference (llama `chat_completion`): each turn `<s>[INST] ... [/INST] answer </s>`."""

    name: str = "llama2_chat"

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        system, pairs = turn_pairs(messages, add_generation_prompt)
        segments: list[Segment] = []
        for index, (user, answer) in enumerate(pairs):
            user = user.strip()
            if index == 0 and system is not None and system.strip():
                user = f"<<SYS>>\n{system.strip()}\n<</SYS>>\n\n{user}"
            if tokens.bos:
                segments.append(_special("bos", tokens))
            segments.append(Segment(f"[INST] {user} [/INST]"))
            if answer is not None:
                segments += answer_segments(f" {answer.strip()} ", tokens)
        return segments


@dataclass(frozen=True)
class Phi2(EndsAtEos):
    """Microsoft's phi-2 card: `Instruct: {prompt}\\nOutput: {answer}` + EOS (`<|endoftext|>`)."""

    name: str = "phi2"

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        system, pairs = turn_pairs(messages, add_generation_prompt)
        segments = leading_bos(tokens)
        for index, (user, answer) in enumerate(pairs):
            prefix = f"{system}\n" if index == 0 and system else ""
            segments.append(Segment(f"{prefix}Instruct: {user}\nOutput:"))
            if answer is not None:
                segments += answer_segments(f" {answer}", tokens)
        return segments


@dataclass(frozen=True)
class Phi3:
    """Phi-3: `<|user|>\\n{user}<|end|>\\n<|assistant|>\\n{answer}<|end|>\\n`; `<|end|>` is trained."""

    name: str = "phi3"

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        system, pairs = turn_pairs(messages, add_generation_prompt)
        segments = leading_bos(tokens)
        if system:
            segments += [Segment(f"<|system|>\n{system}"), _special("end", tokens), Segment("\n")]
        for user, answer in pairs:
            segments += [Segment(f"<|user|>\n{user}"), _special("end", tokens), Segment("\n<|assistant|>\n")]
            if answer is not None:
                segments += [
                    Segment(answer, trained=True),
                    _special("end", tokens, trained=True),
                    Segment("\n"),
                ]
        return segments

    def terminator(self, tokens: SpecialTokens) -> str:
        return PHI3_END


@dataclass(frozen=True)
class CustomFormat(EndsAtEos):
    """A user's `format` / `no_input_format` strings with {instruction}, {input}, {system} fields."""

    format: str
    no_input_format: str | None = None
    system_format: str | None = None
    """axolotl's custom prompt: the system prompt, formatted, before the turn (when not empty)."""
    name: str = "custom"

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        return render_turns(
            messages, tokens, add_generation_prompt, lambda _, user, system: self.prompt(user, "", system)
        )

    def render_instruction(
        self, instruction: str, input_text: str, system: str | None, tokens: SpecialTokens
    ) -> list[Segment]:
        return [*leading_bos(tokens), Segment(self.prompt(instruction, input_text, system))]

    def prompt(self, instruction: str, input_text: str, system: str | None) -> str:
        template = self.format if input_text or self.no_input_format is None else self.no_input_format
        head = self.system_format.format(system=system) if self.system_format and system else ""
        return head + template.format_map(
            {"instruction": instruction, "input": input_text, "system": system or ""}
        )


FORMATS: dict[str, ChatFormat] = {
    "alpaca": Alpaca(),
    "llama2_chat": Llama2Chat(),
    "phi2": Phi2(),
    "phi3": Phi3(),
}


def get_format(name: str) -> ChatFormat:
    """A named format; an unknown name lists the valid ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise FtError(f"unknown prompt format {name!r}", hint="one of: " + ", ".join(FORMATS)) from None


def special_tokens_of(tokenizer: Any) -> SpecialTokens:
    """The BOS/EOS strings and whether the tokenizer adds BOS on its own (probed, not guessed)."""
    eos = tokenizer.eos_token
    if not eos:
        raise FtError(
            "the tokenizer has no EOS token, so the model could not learn to stop",
            hint="set special_tokens: {eos_token: ...}",
        )
    bos = tokenizer.bos_token
    adds_bos = False
    if bos is not None and tokenizer.bos_token_id is not None:
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        adds_bos = bool(probe) and probe[0] == tokenizer.bos_token_id
    return SpecialTokens(bos=bos, eos=str(eos), adds_bos=adds_bos)


def segments_text(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments)
