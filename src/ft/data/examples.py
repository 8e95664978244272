"""From a dataset row to rendered segments: field mapping, role mapping, the format's render.

A row that cannot be rendered raises `RenderError` with the reason; the caller records it as a
bad row with its dataset and row number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ft.data.instruct import INSTRUCTION_TYPES, InstructionType
from ft.data.prompts import (
    Alpaca,
    ChatFormat,
    CustomFormat,
    Message,
    RenderError,
    Segment,
    SpecialTokens,
    answer_segments,
)
from ft.data.renderers import format_for_dataset
from ft.data.values import as_text, describe

if TYPE_CHECKING:
    from ft.config.schema import DatasetSettings, FtConfig

DEFAULT_ROLES = {
    "system": ("system",),
    "user": ("user", "human", "prompter"),
    "assistant": ("assistant", "gpt", "model", "bot"),
}
MESSAGE_COLUMNS = ("messages", "conversations")

RowRenderer = Callable[[dict[str, Any]], list[Segment]]


def row_renderer(
    cfg: FtConfig, dataset: DatasetSettings, tokenizer: Any, tokens: SpecialTokens
) -> RowRenderer:
    """A function that renders one row of this dataset into segments (raises RenderError)."""
    if dataset.type == "completion" and not dataset.format:
        column = dataset.field or "text"
        return lambda row: render_completion(_text(row, column), tokens)
    if dataset.type == "input_output" and not dataset.format:
        return render_input_output
    fmt = format_for_dataset(cfg, dataset, tokenizer)
    if dataset.type == "chat_template" and not dataset.format:
        from ft.data.jinja import JinjaTemplate, check_terminator

        if isinstance(fmt, JinjaTemplate):
            check_terminator(fmt, tokens)
        roles = role_lookup(dataset)
        return lambda row: fmt.render(conversation(row, dataset, roles), tokens)
    if isinstance(fmt, InstructionType):
        columns = _mapped_columns(dataset)
        return lambda row: fmt.render_row(row, columns, tokens)
    return lambda row: render_instruction_row(fmt, row, dataset, tokens)


def _mapped_columns(dataset: DatasetSettings) -> Callable[[dict[str, Any]], tuple[str, str, str, str | None]]:
    """An alpaca-like type's columns, as the dataset maps them."""

    def read(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
        return (
            _text(row, dataset.field_instruction),
            _text(row, dataset.field_input, required=False),
            _text(row, dataset.field_output),
            system_of(row, dataset),
        )

    return read


def render_input_output(row: dict[str, Any]) -> list[Segment]:
    """axolotl's template-free `input_output`: `segments` of {text, label}, each tokenized on its own,
    trained where `label` is true; no BOS or EOS added (write them in the text)."""
    segments = row.get("segments")
    if not isinstance(segments, list) or not segments:
        raise RenderError("field 'segments' is not a non-empty list of {text, label} objects")
    out = []
    for number, item in enumerate(segments, 1):
        if not isinstance(item, dict):
            raise RenderError(f"segment {number} is {describe(item)}, not an object")
        text = (
            as_text(item.get("text"), f"segment {number}: 'text'") if item.get("text") is not None else None
        )
        if text is None:
            raise RenderError(f"segment {number}: 'text' is missing")
        label = item.get("label", False)
        if not isinstance(label, bool):
            raise RenderError(f"segment {number}: 'label' is {describe(label)}, not true or false")
        out.append(Segment(text, trained=label, separate=True))
    return out


def required_columns(dataset: DatasetSettings) -> list[tuple[str, tuple[str, ...]]]:
    """The columns every row needs: (config key that names it, the column names that satisfy it)."""
    if dataset.type == "completion" and not dataset.format:
        return [("field", (dataset.field or "text",))]
    if dataset.type == "chat_template" and not dataset.format:
        return [("field_messages", (dataset.field_messages,) if dataset.field_messages else MESSAGE_COLUMNS)]
    if dataset.type == "input_output" and not dataset.format:
        return [("type", ("segments",))]
    kind = INSTRUCTION_TYPES.get(dataset.type)
    if kind is not None and kind.fields is not None:
        return []  # fixed columns, reported per row when missing
    return [("field_instruction", (dataset.field_instruction,)), ("field_output", (dataset.field_output,))]


def _text(row: dict[str, Any], column: str, required: bool = True) -> str:
    if column not in row:
        if required:
            raise RenderError(f"missing field {column!r} (columns: {', '.join(row) or 'none'})")
        return ""
    value = row[column]
    if value is None:
        if required:
            raise RenderError(f"field {column!r} is null")
        return ""
    text = as_text(value, f"field {column!r}")
    if required and not text.strip():
        raise RenderError(f"field {column!r} is empty")
    return text


def render_completion(text: str, tokens: SpecialTokens) -> list[Segment]:
    """Text trained as it is; BOS and EOS added unless the text already has them (no double BOS)."""
    segments: list[Segment] = []
    if tokens.adds_bos and tokens.bos and not text.startswith(tokens.bos):
        segments.append(Segment(tokens.bos, special="bos"))
    if text.rstrip().endswith(tokens.eos):
        return [*segments, Segment(text, trained=True)]
    return [*segments, *answer_segments(text, tokens)]


def system_of(row: dict[str, Any], dataset: DatasetSettings) -> str | None:
    column = dataset.field_system or ("system" if dataset.format else None)
    value = row.get(column) if column else None
    if isinstance(value, str) and value.strip():
        return value
    return dataset.system_prompt


def render_instruction_row(
    fmt: ChatFormat, row: dict[str, Any], dataset: DatasetSettings, tokens: SpecialTokens
) -> list[Segment]:
    instruction = _text(row, dataset.field_instruction)
    input_text = _text(row, dataset.field_input, required=False)
    output = _text(row, dataset.field_output)
    return render_instruction(fmt, instruction, input_text, system_of(row, dataset), tokens, output)


def render_instruction(
    fmt: ChatFormat,
    instruction: str,
    input_text: str,
    system: str | None,
    tokens: SpecialTokens,
    answer: str | None = None,
) -> list[Segment]:
    """An instruction row as trained (with `answer`) or as the prompt to generate from (without).

    Alpaca (with a non-empty input) and custom formats have their own input form; the other
    formats get the input after the instruction, in the user turn.
    """
    if isinstance(fmt, CustomFormat) or (isinstance(fmt, Alpaca) and input_text.strip()):
        prompt = fmt.render_instruction(instruction, input_text, system, tokens)
        return prompt if answer is None else [*prompt, *answer_segments(answer, tokens)]
    user = f"{instruction}\n\n{input_text}" if input_text.strip() else instruction
    messages = [Message("system", system)] if system is not None else []
    messages.append(Message("user", user))
    if answer is not None:
        messages.append(Message("assistant", answer))
    return fmt.render(messages, tokens, add_generation_prompt=answer is None)


def role_lookup(dataset: DatasetSettings) -> dict[str, str]:
    lookup = {name: role for role, names in DEFAULT_ROLES.items() for name in names}
    for role, names in (dataset.roles or {}).items():
        for name in names:
            lookup[name] = role
    return lookup


def turn_messages(turns: Sequence[Any], dataset: DatasetSettings, roles: dict[str, str]) -> list[Message]:
    """Chat turns of a row as messages, with the dataset's role and content keys (RenderError if bad)."""
    role_key = dataset.message_property_mappings.get("role", "role")
    content_key = dataset.message_property_mappings.get("content", "content")
    return [_message(turn, number, role_key, content_key, roles) for number, turn in enumerate(turns, 1)]


def conversation(row: dict[str, Any], dataset: DatasetSettings, roles: dict[str, str]) -> list[Message]:
    messages = turn_messages(_turns(row, dataset), dataset, roles)
    if dataset.drop_system_message:
        messages = [m for m in messages if m.role != "system"]
    if dataset.system_prompt and (not messages or messages[0].role != "system"):
        messages.insert(0, Message("system", dataset.system_prompt))
    if not any(m.role == "assistant" for m in messages):
        raise RenderError("no assistant turn to train on")
    # Turns after the last answer would only be context for nothing: they are not rendered.
    while messages[-1].role != "assistant":
        messages.pop()
    return messages


def _turns(row: dict[str, Any], dataset: DatasetSettings) -> Sequence[Any]:
    column = dataset.field_messages or next((c for c in MESSAGE_COLUMNS if c in row), None)
    if column is None or column not in row:
        wanted = dataset.field_messages or " or ".join(MESSAGE_COLUMNS)
        raise RenderError(f"missing field {wanted!r} (columns: {', '.join(row) or 'none'})")
    turns = row[column]
    if not isinstance(turns, list) or not turns:
        raise RenderError(f"field {column!r} is not a non-empty list of turns")
    return turns


def _message(turn: Any, number: int, role_key: str, content_key: str, roles: dict[str, str]) -> Message:
    if not isinstance(turn, dict):
        raise RenderError(f"turn {number} is {describe(turn)}, not an object")
    if role_key not in turn and "from" in turn and role_key == "role":
        role_key, content_key = "from", "value"  # ShareGPT
    raw_role, content = turn.get(role_key), turn.get(content_key)
    role = roles.get(str(raw_role))
    if role is None:
        raise RenderError(
            f"turn {number} has role {raw_role!r}; known: {', '.join(sorted(roles))} (map others with `roles`)"
        )
    if content is None:
        state = "is null" if content_key in turn else "is missing"
        raise RenderError(f"turn {number}: {content_key!r} {state}")
    content = as_text(content, f"turn {number}: {content_key!r}")
    if role == "assistant" and not content.strip():
        raise RenderError(f"turn {number} is an empty assistant answer")
    return Message(role, content)  # type: ignore[arg-type]
