"""Preference pairs: a prompt and two answers, read in the common shapes and rendered with the
run's prompt format, so that the prompt tokens are those SFT trained on and chat sends.

Shapes of a row (column names from the dataset's field_* keys):
- `prompt`, `chosen`, `rejected` as text (trl's "standard" preference rows, chatml.prompt_pairs);
- `chosen` / `rejected` as one assistant turn (a message or a one-turn list) with the prompt as
  text, as chat turns (`prompt` or, for axolotl's chat_template.default, `messages`) or as an
  instruction (+ input) for instruction formats;
- `chosen` / `rejected` as whole conversations whose shared beginning is the prompt (Anthropic
  HH, ultrafeedback: trl's "implicit prompt").

Each answer is rendered as the final assistant turn of the conversation; only that turn is
scored (earlier assistant turns are context). Both sequences are tokenized in one piece, as for
SFT rows (`ft.data.tokens`); the prompt is their common beginning up to the first scored token,
and each completion ends at its last scored token (the terminator). The trainers get
`prompt_ids`, `chosen_ids`, `rejected_ids` and tokenize nothing themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ft.base.errors import DataError
from ft.data.examples import (
    MESSAGE_COLUMNS,
    as_text,
    describe,
    render_instruction,
    role_lookup,
    system_of,
    turn_messages,
)
from ft.data.pipeline import (
    BadRow,
    DataReport,
    Note,
    PreparedData,
    SplitReport,
    cached_prepared,
    char_budget,
    check_bad_rows,
    check_columns,
    content_digest,
    cut_to_budget,
    data_fingerprint,
    length_strategy,
    no_training_rows,
    quiet,
    read_sources,
    run_sources,
    save_prepared,
    split_eval,
    summary_lines,
)
from ft.data.prompts import (
    Alpaca,
    ChatFormat,
    CustomFormat,
    Message,
    RenderError,
    Segment,
    SpecialTokens,
    special_tokens_of,
)
from ft.data.renderers import format_for_dataset
from ft.data.rows import Source
from ft.data.tokens import IGNORE_INDEX, encode_many, tokenizer_fingerprint

if TYPE_CHECKING:
    from ft.config.schema import DatasetSettings, FtConfig

PAIR_KEYS = ("rl", "max_prompt_len")
"""Config keys beyond the SFT data keys that change prepared pairs (the cache fingerprint)."""

Render = Callable[[str], list[Segment]]
"""The whole conversation with one answer as its final, trained turn."""


@dataclass(frozen=True)
class PairParts:
    """A pair row read: how to render the conversation with an answer, and the two answers."""

    render: Render
    chosen: str
    rejected: str


@dataclass
class PairExample:
    """One rendered and encoded pair."""

    key: str
    where: str
    prompt: list[Segment]
    chosen: list[Segment]
    rejected: list[Segment]
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    truncated: bool = False

    @property
    def longest(self) -> int:
        """Tokens of the longer of its two sequences (prompt + answer)."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))

    @property
    def tokens(self) -> int:
        """Tokens of both sequences: the prompt is run twice."""
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)

    @property
    def trained_tokens(self) -> int:
        return len(self.chosen_ids) + len(self.rejected_ids)


# ---------------------------------------------------------------------------------------------
# A row into its parts


def pair_reader(
    cfg: FtConfig, dataset: DatasetSettings, tokenizer: Any, tokens: SpecialTokens
) -> Callable[[dict[str, Any]], PairParts]:
    """A function that reads one pair row of this dataset (raises RenderError for a bad pair)."""
    fmt = format_for_dataset(cfg, dataset, tokenizer)
    roles = role_lookup(dataset)
    instruction_style = isinstance(fmt, (CustomFormat, Alpaca))

    def read(row: dict[str, Any]) -> PairParts:
        chosen_raw = _field(row, dataset.field_chosen)
        rejected_raw = _field(row, dataset.field_rejected)
        conversations = _conversations(chosen_raw, rejected_raw, dataset, roles)
        if conversations is not None:
            prompt, chosen, rejected = conversations
            render = _chat_render(fmt, _with_system(prompt, row, dataset), tokens)
        else:
            chosen = _answer(chosen_raw, dataset.field_chosen, dataset, roles)
            rejected = _answer(rejected_raw, dataset.field_rejected, dataset, roles)
            if (
                instruction_style
                and _has_text(row, dataset.field_instruction)
                and not _has_prompt(row, dataset)
            ):
                render = _instruction_render(fmt, row, dataset, tokens)
            else:
                render = _chat_render(
                    fmt, _with_system(_prompt_messages(row, dataset, roles), row, dataset), tokens
                )
        _check_answers(chosen, rejected, dataset)
        return PairParts(render, chosen, rejected)

    return read


def _chat_render(fmt: ChatFormat, prompt: list[Message], tokens: SpecialTokens) -> Render:
    return lambda answer: fmt.render([*prompt, Message("assistant", answer)], tokens)


def _instruction_render(
    fmt: ChatFormat, row: dict[str, Any], dataset: DatasetSettings, tokens: SpecialTokens
) -> Render:
    """An instruction (+ input) prompt, rendered as the SFT rows of this format are."""
    instruction = as_text(row[dataset.field_instruction], f"field {dataset.field_instruction!r}")
    value = row.get(dataset.field_input)
    input_text = "" if value is None else as_text(value, f"field {dataset.field_input!r}")
    system = system_of(row, dataset)
    return lambda answer: render_instruction(fmt, instruction, input_text, system, tokens, answer)


def required_pair_columns(dataset: DatasetSettings) -> list[tuple[str, tuple[str, ...]]]:
    """The columns every pair row needs (the prompt may come from several, so it is checked per row)."""
    return [("field_chosen", (dataset.field_chosen,)), ("field_rejected", (dataset.field_rejected,))]


def _field(row: dict[str, Any], column: str) -> Any:
    if column not in row:
        raise RenderError(f"missing field {column!r} (columns: {', '.join(row) or 'none'})")
    if row[column] is None:
        raise RenderError(f"field {column!r} is null")
    return row[column]


def _has_text(row: dict[str, Any], column: str) -> bool:
    return isinstance(row.get(column), str) and bool(row[column].strip())


def _has_prompt(row: dict[str, Any], dataset: DatasetSettings) -> bool:
    return row.get(dataset.field_prompt) is not None or _messages_column(row, dataset) is not None


def _messages_column(row: dict[str, Any], dataset: DatasetSettings) -> str | None:
    if dataset.field_messages:
        return dataset.field_messages if dataset.field_messages in row else None
    if dataset.type == "chat_template":
        return next((c for c in MESSAGE_COLUMNS if row.get(c) is not None), None)
    return None


def _is_turns(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(turn, dict) for turn in value)


def _conversations(
    chosen: Any, rejected: Any, dataset: DatasetSettings, roles: dict[str, str]
) -> tuple[list[Message], str, str] | None:
    """Whole conversations on both sides: (the shared prompt, chosen answer, rejected answer)."""
    if not (_is_turns(chosen) and _is_turns(rejected) and len(chosen) > 1 and len(rejected) > 1):
        return None
    good = turn_messages(chosen, dataset, roles)
    bad = turn_messages(rejected, dataset, roles)
    shared = 0
    while shared < min(len(good), len(bad)) and good[shared] == bad[shared]:
        shared += 1
    # Identical conversations: the last turn is the answer on both sides (reported as the same answer).
    shared = min(shared, len(good) - 1, len(bad) - 1)
    for side, turns in ((dataset.field_chosen, good), (dataset.field_rejected, bad)):
        rest = turns[shared:]
        if len(rest) != 1 or rest[0].role != "assistant":
            raise RenderError(
                f"{side!r} goes on for {len(rest)} turn(s) after the turns it shares with the other answer; "
                "a pair needs one final assistant answer on each side"
            )
    return good[:shared], good[shared].content, bad[shared].content


def _answer(value: Any, column: str, dataset: DatasetSettings, roles: dict[str, str]) -> str:
    """An answer given as text, one assistant message, or a list ending with one."""
    if isinstance(value, dict):
        value = [value]
    if _is_turns(value):
        last = turn_messages(value, dataset, roles)[-1]
        if last.role != "assistant":
            raise RenderError(f"field {column!r} ends with a {last.role} turn, not the assistant's answer")
        return last.content
    return as_text(value, f"field {column!r}")


def _prompt_messages(row: dict[str, Any], dataset: DatasetSettings, roles: dict[str, str]) -> list[Message]:
    column = _messages_column(row, dataset)
    if column is not None:
        value = row[column]
        if not _is_turns(value):
            raise RenderError(f"field {column!r} is {describe(value)}, not a list of turns")
        messages = turn_messages(value, dataset, roles)
    elif dataset.field_prompt in row:
        value = _field(row, dataset.field_prompt)
        if _is_turns(value):
            messages = turn_messages(value, dataset, roles)
        else:
            text = as_text(value, f"field {dataset.field_prompt!r}")
            if not text.strip():
                raise RenderError(f"field {dataset.field_prompt!r} is empty")
            messages = [Message("user", text)]
    else:
        raise RenderError(f"missing field {dataset.field_prompt!r} (columns: {', '.join(row) or 'none'})")
    if not messages or messages[-1].role != "user":
        raise RenderError("the prompt does not end with a user turn, so there is nothing to answer")
    return messages


def _with_system(prompt: list[Message], row: dict[str, Any], dataset: DatasetSettings) -> list[Message]:
    system = system_of(row, dataset)
    if system is not None and (not prompt or prompt[0].role != "system"):
        return [Message("system", system), *prompt]
    return prompt


def _check_answers(chosen: str, rejected: str, dataset: DatasetSettings) -> None:
    for column, text in ((dataset.field_chosen, chosen), (dataset.field_rejected, rejected)):
        if not text.strip():
            raise RenderError(f"field {column!r} is empty")
    if chosen.strip() == rejected.strip():
        raise RenderError("chosen and rejected are the same answer: the pair teaches nothing")


# ---------------------------------------------------------------------------------------------
# Rendering and encoding


def split_final_answer(segments: Sequence[Segment]) -> tuple[list[Segment], list[Segment]]:
    """The prompt (every segment before the final answer, none trained) and the final answer's
    segments (the last run of trained ones and what the format writes after them)."""
    trained = [index for index, segment in enumerate(segments) if segment.trained]
    if not trained:
        raise RenderError("the format left no answer to score")
    first = trained[-1]
    while first > 0 and segments[first - 1].trained:
        first -= 1
    prompt = [replace(segment, trained=False) for segment in segments[:first]]
    return prompt, list(segments[first:])


@dataclass
class RenderedPair:
    row_where: str
    prompt: list[Segment]
    chosen: list[Segment]
    rejected: list[Segment]


def render_pair_source(
    cfg: FtConfig, source: Source, tokenizer: Any, bad: list[BadRow]
) -> list[RenderedPair]:
    """Pairs of one dataset rendered to segments; pairs that cannot be rendered go to `bad`."""
    check_columns(source, required_pair_columns(source.settings))
    read = pair_reader(cfg, source.settings, tokenizer, special_tokens_of(tokenizer))
    rendered = []
    for row in source.rows:
        if row.data is None:
            bad.append(BadRow(source.key, source.settings.path, row.where, row.problem or "unreadable"))
            continue
        try:
            parts = read(row.data)
            prompt, chosen = split_final_answer(parts.render(parts.chosen))
            other_prompt, rejected = split_final_answer(parts.render(parts.rejected))
        except RenderError as err:
            bad.append(BadRow(source.key, source.settings.path, row.where, str(err)))
            continue
        if [s.text for s in prompt] != [s.text for s in other_prompt]:
            reason = "the format renders the prompt differently before the two answers"
            bad.append(BadRow(source.key, source.settings.path, row.where, reason))
            continue
        rendered.append(RenderedPair(row.where, prompt, chosen, rejected))
    return rendered


def encode_pair_source(
    cfg: FtConfig, source: Source, tokenizer: Any, report: DataReport
) -> list[PairExample]:
    """Rendered, encoded pairs of one dataset, with the length rules applied."""
    rendered = render_pair_source(cfg, source, tokenizer, report.bad_rows)
    budget = char_budget(cfg, tokenizer)
    sequences = []
    over_budget = []
    for pair in rendered:
        chosen, chosen_cut = cut_to_budget([*pair.prompt, *pair.chosen], budget)
        rejected, rejected_cut = cut_to_budget([*pair.prompt, *pair.rejected], budget)
        sequences += [chosen, rejected]
        over_budget.append(bool(chosen_cut or rejected_cut))
    encoded = encode_many(tokenizer, sequences)
    examples = []
    for index, pair in enumerate(rendered):
        good, bad = encoded[2 * index], encoded[2 * index + 1]
        prompt_ids, chosen_ids, rejected_ids = split_ids(
            good.input_ids, good.labels, bad.input_ids, bad.labels
        )
        example = PairExample(
            source.key,
            pair.row_where,
            pair.prompt,
            pair.chosen,
            pair.rejected,
            prompt_ids,
            chosen_ids,
            rejected_ids,
        )
        kept = apply_pair_length_rules(cfg, example, source.settings, report, over_budget[index])
        if kept is not None:
            examples.append(kept)
    return examples


def split_ids(
    chosen_ids: list[int], chosen_labels: list[int], rejected_ids: list[int], rejected_labels: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) ids: the prompt is the two sequences' common beginning before the
    first scored token; each answer runs to its last scored token (the terminator)."""
    first_good, last_good = _scored_span(chosen_labels)
    first_bad, last_bad = _scored_span(rejected_labels)
    shared = 0
    limit = min(first_good, first_bad)
    while shared < limit and chosen_ids[shared] == rejected_ids[shared]:
        shared += 1
    return chosen_ids[:shared], chosen_ids[shared : last_good + 1], rejected_ids[shared : last_bad + 1]


def _scored_span(labels: list[int]) -> tuple[int, int]:
    scored = [index for index, label in enumerate(labels) if label != IGNORE_INDEX]
    return (scored[0], scored[-1]) if scored else (len(labels), len(labels) - 1)


def apply_pair_length_rules(
    cfg: FtConfig,
    example: PairExample,
    dataset: DatasetSettings,
    report: DataReport,
    over_budget: bool = False,
) -> PairExample | None:
    """max_prompt_len (a bad pair), then sequence_len on the longer sequence (excess_length_strategy,
    unset: drop)."""
    path, strategy = dataset.path, length_strategy(cfg, dataset)

    def bad(reason: str) -> None:
        report.bad_rows.append(BadRow(example.key, path, example.where, reason))

    prompt = len(example.prompt_ids)
    if cfg.max_prompt_len is not None and prompt > cfg.max_prompt_len:
        bad(f"the prompt has {prompt} tokens, over max_prompt_len {cfg.max_prompt_len}")
        return None
    limit = cfg.sequence_len
    if example.longest <= limit and not over_budget:
        return example
    report.too_long += 1
    if strategy == "error":
        raise DataError(
            f"{example.key} ({path}) {example.where}: {example.longest} tokens (prompt and the longer answer), "
            f"over sequence_len {limit}",
            hint="raise sequence_len, or set excess_length_strategy: drop | truncate",
        )
    if strategy == "drop":
        report.dropped_too_long += 1
        return None
    room = limit - prompt
    if room <= 0:
        bad(f"the prompt alone has {prompt} tokens: truncated to sequence_len {limit}, no answer is left")
        return None
    example.chosen_ids = example.chosen_ids[:room]
    example.rejected_ids = example.rejected_ids[:room]
    if example.chosen_ids == example.rejected_ids:
        bad(f"chosen and rejected are identical after truncation to sequence_len {limit}")
        return None
    report.truncated += 1
    example.truncated = True
    return example


# ---------------------------------------------------------------------------------------------
# The whole preparation


def encode_pair_sources(
    cfg: FtConfig, sources: list[Source], tokenizer: Any, report: DataReport
) -> list[PairExample]:
    examples: list[PairExample] = []
    for source in sources:
        report.rows_read += len(source.rows)
        examples += encode_pair_source(cfg, source, tokenizer, report)
    return examples


def summarize_pairs(examples: list[PairExample], report: SplitReport) -> None:
    report.rows = len(examples)
    report.lengths = [example.longest for example in examples]
    report.tokens = sum(example.tokens for example in examples)
    report.trained_tokens = sum(example.trained_tokens for example in examples)
    report.sequences = 2 * len(examples)


def pair_fingerprint(cfg: FtConfig, sources: list[Source], tokenizer_digest: str) -> str:
    parts = {
        "sft": data_fingerprint(cfg, sources, tokenizer_digest),
        **{key: getattr(cfg, key) for key in PAIR_KEYS},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def to_pair_dataset(examples: list[PairExample]) -> Any:
    import datasets

    return datasets.Dataset.from_dict(
        {
            "prompt_ids": [e.prompt_ids for e in examples],
            "chosen_ids": [e.chosen_ids for e in examples],
            "rejected_ids": [e.rejected_ids for e in examples],
        }
    )


def encode_pair_splits(
    cfg: FtConfig, train_sources: list[Source], eval_sources: list[Source], tokenizer: Any, report: DataReport
) -> tuple[list[PairExample], list[PairExample]]:
    """Training and held-out pairs (test_datasets, or the seeded val_set_size split)."""
    train = encode_pair_sources(cfg, train_sources, tokenizer, report)
    held = encode_pair_sources(cfg, eval_sources, tokenizer, report)
    if not eval_sources:
        train, held = split_eval(cfg, train)
    return train, held


def held_out_pairs(cfg: FtConfig, tokenizer: Any) -> list[PairExample]:
    """The held-out pairs, chosen as `prepare_pairs` chooses them."""
    return encode_pair_splits(cfg, *run_sources(cfg), tokenizer, DataReport())[1]


def prepare_pairs(cfg: FtConfig, tokenizer: Any, use_cache: bool = True, note: Note = quiet) -> PreparedData:
    """Training (and eval) pairs ready for the preference trainers, from the cache when nothing
    changed; `note` hears each stage as it starts, as for `prepare_data`."""
    train_sources, eval_sources = run_sources(cfg, note)
    tokenizer_digest = tokenizer_fingerprint(tokenizer)  # hashes the whole vocabulary: once
    fingerprint = pair_fingerprint(cfg, train_sources + eval_sources, tokenizer_digest)
    content = content_digest(train_sources + eval_sources, tokenizer_digest)
    cache, cached = cached_prepared(cfg, fingerprint, content, use_cache, note)
    if cached is not None:
        return cached
    report = DataReport()
    pairs = sum(len(source.rows) for source in train_sources + eval_sources)
    note(f"rendering, tokenizing and masking {pairs:,} pairs")
    train, held = encode_pair_splits(cfg, train_sources, eval_sources, tokenizer, report)
    check_bad_rows(cfg, report)
    if not train:
        raise no_training_rows(report, "pairs")
    summarize_pairs(train, report.train)
    summarize_pairs(held, report.eval)
    evaluation = to_pair_dataset(held) if held else None
    prepared = PreparedData(to_pair_dataset(train), evaluation, report, fingerprint, content)
    if cache is not None:
        note(f"saving the prepared data in {cache}")
        save_prepared(prepared, cache)
    return prepared


def preview_pairs(cfg: FtConfig, tokenizer: Any, limit: int | None) -> tuple[list[PairExample], DataReport]:
    """The first `limit` training pairs (all when None) exactly as trained; bad pairs are reported."""
    report = DataReport()
    sources = read_sources(cfg.datasets, "datasets", limit)
    examples = encode_pair_sources(cfg, sources, tokenizer, report)
    if limit is not None:
        examples = examples[:limit]
    summarize_pairs(examples, report.train)
    return examples, report


def pair_summary_lines(report: DataReport) -> list[str]:
    """What the preparation of pairs did (`ft train`, `ft preprocess`), nothing dropped without a word."""
    train, held = report.train, report.eval
    origin = f" (cached in {report.from_cache})" if report.from_cache else ""
    head = (
        f"data: {train.rows} training pairs ({train.sequences} sequences, {train.tokens:,} tokens, "
        f"{train.trained_tokens:,} in the answers); {held.rows} eval pairs{origin}"
    )
    return [head, *summary_lines(report)[1:]]
