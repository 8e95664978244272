"""Rendering prompts and generating from a loaded model (`ft.infer.loading`), and chat.

Generation stops at EOS and at the format's terminator (phi-3's `<|end|>`), and the terminator
is never part of the returned text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.base.host import available_memory
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


# ---------------------------------------------------------------------------------------------
# Input files (ft generate --input): every row checked before anything is generated


@dataclass(frozen=True)
class InputRow:
    line: int
    """1-based line of the JSON-lines file (0 for --prompt)."""
    data: dict[str, Any]


MAX_SHOWN_ROW_PROBLEMS = 20
INPUT_FORMS = '{"prompt": "..."}, {"messages": [{"role": "user", "content": "..."}]} or {"instruction": "...", "input": "..."}'


def read_input_rows(path: Path) -> list[InputRow]:
    """Every row of a JSON-lines input file; all bad rows at once, by line, in one FtError."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FtError(f"--input: cannot read {path}: {getattr(err, 'strerror', None) or err}") from err
    rows: list[InputRow] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {number}: not JSON ({err.msg})")
            continue
        problem = row_problem(data)
        if problem:
            problems.append(f"line {number}: {problem}")
        else:
            rows.append(InputRow(number, data))
    if problems:
        raise bad_rows_error(path, problems)
    if not rows:
        raise FtError(f"--input: {path} has no rows", hint=f"one JSON object per line: {INPUT_FORMS}")
    return rows


def bad_rows_error(source: str | Path, problems: list[str]) -> FtError:
    shown = [f"  {problem}" for problem in problems[:MAX_SHOWN_ROW_PROBLEMS]]
    if len(problems) > MAX_SHOWN_ROW_PROBLEMS:
        shown.append(f"  ... and {len(problems) - MAX_SHOWN_ROW_PROBLEMS} more")
    return FtError(
        f"--input: {source}: {len(problems)} bad row(s), nothing generated:\n" + "\n".join(shown),
        hint=f"each line is one of {INPUT_FORMS}",
    )


def row_problem(row: Any) -> str | None:
    """Why an input row cannot be prompted, or None (the shape only; rendering is checked later)."""
    if not isinstance(row, dict):
        return f"a JSON object is needed, got {type(row).__name__}"
    if "system" in row and row["system"] is not None and not isinstance(row["system"], str):
        return "'system' must be text"
    if "messages" in row:
        return _messages_problem(row["messages"])
    for key in ("prompt", "instruction"):
        if key in row:
            if not isinstance(row[key], str) or not row[key].strip():
                return f"{key!r} must be non-empty text"
            if key == "instruction" and row.get("input") is not None and not isinstance(row["input"], str):
                return "'input' must be text"
            return None
    return f"needs prompt, messages or instruction (got: {', '.join(row) or 'no keys'})"


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {role, content} objects"
    for index, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
            return f"messages[{index}] must be {{'role': system|user|assistant, 'content': ...}}"
        if not isinstance(turn.get("content", ""), str):
            return f"messages[{index}].content must be text"
    if not any(turn["role"] == "user" for turn in messages):
        return "'messages' has no user turn to answer"
    return None


def render_input_rows(
    loaded: LoadedModel, rows: Sequence[InputRow], system: str | None, source: str
) -> list[list[int]]:
    """The prompt ids of every row, rendered as trained; rows that cannot be rendered (roles out of
    order for the format, ...) are all reported at once, by line, before anything is generated."""
    prompts: list[list[int]] = []
    problems: list[str] = []
    for row in rows:
        try:
            prompts.append(prompt_ids(loaded, render_row(loaded, row.data, system)))
        except FtError as err:
            problems.append(f"line {row.line}: {err.message}")
    if problems:
        raise bad_rows_error(source, problems)
    return prompts


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
    return generate_batch(model, loaded, [ids], settings, on_text)[0]


def pad_id_of(loaded: LoadedModel) -> int:
    pad = loaded.tokenizer.pad_token_id
    return int(pad) if pad is not None else loaded.stop_ids[0]


def left_padded(prompts: Sequence[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask), each prompt right-aligned: the new tokens of every row start at
    the same position, and the mask keeps the padding out of attention (and, through the position
    ids generate() derives from it, out of the positions)."""
    import torch

    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids, mask


def generate_batch(
    model: Any,
    loaded: LoadedModel,
    prompts: Sequence[list[int]],
    settings: GenerationSettings,
    on_text: TextCallback | None = None,
) -> list[str]:
    """Answers to several prompts in one generate() call, left-padded; each row stops at its own
    stop token (finished rows are padded while the others go on) and is cut there. Greedy answers
    equal one-at-a-time generation (tests/test_infer.py compares). `on_text` streams a single prompt."""
    import torch

    if on_text is not None and len(prompts) != 1:
        raise ValueError("streaming needs a single prompt")
    device = next(model.parameters()).device
    input_ids, mask = left_padded(prompts, pad_id_of(loaded))
    streamer = text_streamer(loaded.tokenizer, loaded.stop_ids, on_text) if on_text else None
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=loaded.stop_ids,
            pad_token_id=pad_id_of(loaded),
            streamer=streamer,
            **settings.generate_kwargs(),
        )
    width = input_ids.shape[1]
    return [decode_answer(loaded.tokenizer, row[width:].tolist(), loaded.stop_ids) for row in output]


def generate_in_batches(
    model: Any,
    loaded: LoadedModel,
    prompts: Sequence[list[int]],
    settings: GenerationSettings,
    batch_size: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[str]:
    """Answers to every prompt, in order, `batch_size` prompts per generate_batch call (None: from
    the free memory, default_batch_size); `on_done` hears how many are answered after each call."""
    if not prompts:
        return []
    size = batch_size or default_batch_size(model, max(map(len, prompts)), settings.max_new_tokens)
    answers: list[str] = []
    for chunk in batches(len(prompts), size):
        answers += generate_batch(model, loaded, [prompts[i] for i in chunk], settings)
        if on_done is not None:
            on_done(chunk.stop)
    return answers


MAX_DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
"""Default rows per generate() call: on a CPU, bigger batches gain little over 8 (bench/generate.py)."""
MEMORY_SHARE = 0.5


def default_batch_size(model: Any, longest_prompt: int, max_new_tokens: int) -> int:
    """Rows per generate() call from the memory free for the KV cache and the logits of each row
    (half of what is free), at most MAX_DEFAULT_BATCH for the device."""
    import torch

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = int(getattr(config, "num_hidden_layers", 32))
    heads = int(getattr(config, "num_attention_heads", 32))
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or getattr(config, "hidden_size", 4096) // heads)
    vocab = int(getattr(config, "vocab_size", 32000))
    # The KV cache is kept in the activations' dtype (a k-bit model's float parameters say which).
    element = model.dtype.itemsize if getattr(model.dtype, "is_floating_point", False) else 4
    tokens = longest_prompt + max_new_tokens
    per_row = 2 * layers * kv_heads * head_dim * tokens * element + 2 * vocab * 4 * tokens
    device = next(model.parameters()).device
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cap = MAX_DEFAULT_BATCH["cuda"]
    else:
        free = available_memory() or per_row * MAX_DEFAULT_BATCH["cpu"] * 4
        cap = MAX_DEFAULT_BATCH["cpu"]
    return max(1, min(cap, int(free * MEMORY_SHARE) // max(per_row, 1)))


def batches(count: int, size: int) -> list[range]:
    """[0, size), [size, 2 size), ... over `count` rows, in order."""
    return [range(start, min(start + size, count)) for start in range(0, count, max(size, 1))]


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
