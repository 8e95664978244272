"""Rendering prompts and generating from a loaded model (`ft.infer.loading`), and chat.

Generation stops at EOS and at the format's terminator (phi-3's `<|end|>`), and the terminator
is never part of the returned text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.data.examples import render_instruction
from ft.data.prompts import (
    Message,
    RenderError,
    Segment,
)
from ft.infer.loading import LoadedModel

if TYPE_CHECKING:
    pass


TextCallback = Callable[[str], None]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; temperature 0 means greedy (deterministic)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        if self.temperature <= 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


# ---------------------------------------------------------------------------------------------
# Rendering


def render_prompt(loaded: LoadedModel, messages: Sequence[Message]) -> list[Segment]:
    """The generation prompt for a conversation ending with a user turn, as trained."""
    try:
        return loaded.chat_format.render(messages, loaded.tokens, add_generation_prompt=True)
    except RenderError as err:
        raise FtError(f"cannot render the conversation: {err}") from err


def row_messages(row: dict[str, Any], system: str | None = None) -> list[Message]:
    """The conversation of a {"prompt"} or {"messages"} input row.

    A trailing assistant turn in `messages` is the reference answer, not part of the prompt.
    """
    if "messages" in row:
        messages = [_message(turn) for turn in _list(row["messages"])]
        if messages and messages[-1].role == "assistant":
            messages = messages[:-1]
    elif "prompt" in row:
        messages = [Message("user", _str(row, "prompt"))]
    else:
        raise FtError(f"an input row needs prompt, messages or instruction (got: {', '.join(row) or 'none'})")
    system = row_system(row) or system
    if system and not (messages and messages[0].role == "system"):
        messages.insert(0, Message("system", system))
    return messages


def row_system(row: dict[str, Any]) -> str | None:
    value = row.get("system")
    return value if isinstance(value, str) and value else None


def render_row(loaded: LoadedModel, row: dict[str, Any], system: str | None = None) -> list[Segment]:
    """An input row's prompt, rendered as in training (instruction rows through ft.data.examples)."""
    if "instruction" not in row or "messages" in row or "prompt" in row:
        return render_prompt(loaded, row_messages(row, system))
    input_text = row.get("input")
    try:
        return render_instruction(
            loaded.chat_format,
            _str(row, "instruction"),
            input_text if isinstance(input_text, str) else "",
            row_system(row) or system,
            loaded.tokens,
        )
    except RenderError as err:
        raise FtError(f"cannot render the conversation: {err}") from err


def _message(turn: Any) -> Message:
    if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
        raise FtError(f"a message must be {{'role': system|user|assistant, 'content': ...}}, got {turn!r}")
    return Message(turn["role"], str(turn.get("content", "")))


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FtError("messages must be a list of {role, content} objects")
    return value


def _str(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise FtError(f"field {key!r} must be text, got {type(value).__name__}")
    return value


def prompt_ids(loaded: LoadedModel, segments: Sequence[Segment]) -> list[int]:
    """Token ids of rendered prompt segments, encoded exactly as training encodes them."""
    from ft.data.tokens import encode_segments

    return encode_segments(loaded.tokenizer, segments).input_ids


# ---------------------------------------------------------------------------------------------
# Generation


def generate(
    loaded: LoadedModel,
    segments: Sequence[Segment],
    settings: GenerationSettings,
    on_text: TextCallback | None = None,
) -> str:
    """The model's answer to a rendered prompt, cut at the first stop token, stripped."""
    return generate_from_ids(loaded.model, loaded, prompt_ids(loaded, segments), settings, on_text)


def generate_from_ids(
    model: Any,
    loaded: LoadedModel,
    ids: list[int],
    settings: GenerationSettings,
    on_text: TextCallback | None = None,
) -> str:
    """`generate` with an explicit model (the base model for comparisons) and prompt ids."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    streamer = text_streamer(loaded.tokenizer, loaded.stop_ids, on_text) if on_text else None
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=loaded.stop_ids,
            pad_token_id=loaded.tokenizer.pad_token_id
            if loaded.tokenizer.pad_token_id is not None
            else loaded.stop_ids[0],
            streamer=streamer,
            **settings.generate_kwargs(),
        )
    new_ids = output[0, len(ids) :].tolist()
    return decode_answer(loaded.tokenizer, new_ids, loaded.stop_ids)


def decode_answer(tokenizer: Any, new_ids: list[int], stop_ids: Sequence[int]) -> str:
    """The text before the first stop token; special tokens dropped, surrounding space stripped
    (formats such as llama2_chat train the answer as ' answer ')."""
    cut = next((i for i, token in enumerate(new_ids) if token in stop_ids), len(new_ids))
    return str(tokenizer.decode(new_ids[:cut], skip_special_tokens=True)).strip()


@dataclass
class _StreamState:
    ids: list[int] = field(default_factory=list)
    shown: int = 0
    stopped: bool = False
    prompt_seen: bool = False


def text_streamer(tokenizer: Any, stop_ids: Sequence[int], on_text: TextCallback) -> Any:
    """A transformers streamer that hands each new piece of decoded text to `on_text`.

    generate() first passes the prompt, then one token at a time. The whole answer is decoded
    each time and only the new suffix is passed on, so multi-token characters come out whole
    (text ending in U+FFFD is a partial UTF-8 character and waits). Nothing after a stop token.
    """
    from transformers.generation.streamers import BaseStreamer

    state = _StreamState()

    class CallbackStreamer(BaseStreamer):
        def put(self, value: Any) -> None:
            if not state.prompt_seen:
                state.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                if state.stopped or token in stop_ids:
                    state.stopped = True
                    return
                state.ids.append(int(token))
            self._flush(final=False)

        def end(self) -> None:
            self._flush(final=True)

        def _flush(self, final: bool) -> None:
            # The answer's leading space (llama2_chat, phi2 train ' answer') is not shown.
            text = str(tokenizer.decode(state.ids, skip_special_tokens=True)).lstrip()
            if not final and text.endswith("\ufffd"):
                return
            if len(text) > state.shown:
                on_text(text[state.shown :])
                state.shown = len(text)

    return CallbackStreamer()


# ---------------------------------------------------------------------------------------------
# Chat


@dataclass
class ChatSession:
    """A multi-turn conversation: each reply is generated from the whole history, rendered as trained."""

    loaded: LoadedModel
    settings: GenerationSettings
    system: str | None = None
    turns: list[Message] = field(default_factory=list)

    def messages(self, user_text: str) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return [*head, *self.turns, Message("user", user_text)]

    def reply(self, user_text: str, on_text: TextCallback | None = None) -> str:
        segments = render_prompt(self.loaded, self.messages(user_text))
        answer = generate(self.loaded, segments, self.settings, on_text)
        self.turns += [Message("user", user_text), Message("assistant", answer)]
        return answer

    def reset(self) -> None:
        self.turns = []

    def prompt_tokens(self, user_text: str) -> int:
        return len(prompt_ids(self.loaded, render_prompt(self.loaded, self.messages(user_text))))
