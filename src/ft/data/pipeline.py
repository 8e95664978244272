"""The data pipeline: read, render, tokenize and mask, apply the length rule, split, pack, cache.

`prepare_data` hands the trainer rows of `input_ids` and `labels` (and `seq_lengths` when
packed), so trl never tokenizes a second time in its own way. Bad rows are collected with their
dataset and row number; the run fails on them unless `skip_invalid_rows` is set, and then the
count skipped is in the report. Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ft.base.errors import DataError
from ft.data.examples import required_columns, row_renderer
from ft.data.packing import pack_lengths
from ft.data.prompts import RenderError, Segment, special_tokens_of
from ft.data.rows import Row, Source, read_source
from ft.data.tokens import IGNORE_INDEX, encode_many, tokenizer_fingerprint

if TYPE_CHECKING:
    from ft.config.schema import DatasetSettings, DataSettings, FtConfig

Item = TypeVar("Item")
CACHE_LAYOUT = 1
BAD_ROWS_SHOWN = 5
REPORT_FILE = "ft_report.json"
DATA_KEYS = (
    "sequence_len",
    "excess_length_strategy",
    "min_sample_len",
    "dataset_exact_deduplication",
    "shuffle_before_merging_datasets",
    "skip_invalid_rows",
    "sample_packing",
    "train_on_inputs",
    "val_set_size",
    "seed",
    "chat_template",
    "special_tokens",
    "tokens",
    "shuffle_merged_datasets",
)
"""Top-level config keys that change the prepared data (with the datasets' own settings)."""


@dataclass(frozen=True)
class BadRow:
    key: str
    path: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key} ({self.path}) {self.where}: {self.reason}"


@dataclass
class Example:
    """One rendered and encoded row."""

    key: str
    where: str
    segments: list[Segment]
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    chars_before_cut: int = 0
    """The rendered row's length in characters when it was cut before tokenizing (0: not cut)."""

    @property
    def trained_tokens(self) -> int:
        return len(self.labels) - self.labels.count(IGNORE_INDEX)


@dataclass
class SplitReport:
    rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    lengths: list[int] = field(default_factory=list)
    sequences: int = 0
    packing_efficiency: float | None = None

    def percentiles(self) -> dict[str, int]:
        if not self.lengths:
            return {}
        ordered = sorted(self.lengths)
        return {
            f"p{p}": ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] for p in (50, 90, 99, 100)
        }


@dataclass(frozen=True)
class MixLine:
    """One training dataset in the mix: its usable rows, its weight, the rows trained."""

    key: str
    path: str
    rows: int
    weight: float
    used: int


@dataclass
class DataReport:
    rows_read: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    skipped_bad: int = 0
    too_long: int = 0
    dropped_too_long: int = 0
    truncated: int = 0
    split_long: int = 0
    """Rows over sequence_len split into sequence_len pieces (completion datasets, as axolotl does)."""
    too_short: int = 0
    duplicates: int = 0
    no_trained_tokens: int = 0
    train: SplitReport = field(default_factory=SplitReport)
    eval: SplitReport = field(default_factory=SplitReport)
    mix: list[MixLine] = field(default_factory=list)
    from_cache: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for split in ("train", "eval"):
            data[split]["percentiles"] = getattr(self, split).percentiles()
            del data[split]["lengths"]
        data["bad_rows"] = [str(row) for row in self.bad_rows]
        return data

    def counts(self) -> dict[str, Any]:
        """What went in and what was left out, for run.json: nothing dropped without a number."""
        mix = {"mix": [asdict(line) for line in self.mix]} if is_weighted(self.mix) else {}
        return {
            **mix,
            "rows_read": self.rows_read,
            "bad_rows_skipped": self.skipped_bad,
            "dropped_over_sequence_len": self.dropped_too_long,
            "truncated_to_sequence_len": self.truncated,
            "split_over_sequence_len": self.split_long,
            "dropped_under_min_sample_len": self.too_short,
            "dropped_duplicates": self.duplicates,
            "dropped_nothing_to_train": self.no_trained_tokens,
            "train_rows": self.train.rows,
            "eval_rows": self.eval.rows,
        }


@dataclass
class PreparedData:
    train: Any
    """A datasets.Dataset with input_ids, labels (and seq_lengths when packed)."""
    eval: Any | None
    report: DataReport
    fingerprint: str
    """The cache key: everything that affects the prepared rows."""
    content: str = ""
    """The data itself (the files' bytes, the tokenizer), not where it lives: what a resume compares."""


Note = Callable[[str], None]


def quiet(message: str) -> None:
    """The `Note` that hears nothing."""
    return None


# ---------------------------------------------------------------------------------------------
# Rendering and encoding


def render_source(
    cfg: FtConfig, source: Source, tokenizer: Any, bad: list[BadRow]
) -> list[tuple[Row, list[Segment]]]:
    """Rows rendered to segments; rows that cannot be rendered go to `bad`."""
    check_columns(source)
    tokens = special_tokens_of(tokenizer)
    render = row_renderer(cfg, source.settings, tokenizer, tokens)
    rendered = []
    for row in source.rows:
        if row.data is None:
            bad.append(BadRow(source.key, source.settings.path, row.where, row.problem or "unreadable"))
            continue
        try:
            rendered.append((row, render(row.data)))
        except RenderError as err:
            bad.append(BadRow(source.key, source.settings.path, row.where, str(err)))
    return rendered


def check_columns(source: Source, required: list[tuple[str, tuple[str, ...]]] | None = None) -> None:
    """A file whose schema lacks a mapped column: every row would fail, so it is one error, even
    with skip_invalid_rows (skipping the whole file is not what anyone asked for). `required`:
    (config key, column names) pairs; default: those of an SFT row of the dataset's format."""
    if source.columns is None:
        return
    for key, names in required if required is not None else required_columns(source.settings):
        if not any(name in source.columns for name in names):
            wanted = " or ".join(repr(name) for name in names)
            raise DataError(
                f"{source.key}.{key}: {source.settings.path} has no column {wanted}; "
                f"its columns: {', '.join(source.columns) or 'none'}",
                hint=f"set {source.key}.{key} to the column that holds it",
            )


def encode_source(cfg: FtConfig, source: Source, tokenizer: Any, report: DataReport) -> list[Example]:
    """Rendered, encoded rows of one source with the length rule applied."""
    rendered = render_source(cfg, source, tokenizer, report.bad_rows)
    strategy = length_strategy(cfg, source.settings)
    # A row split into pieces is kept up to 64 pieces, as axolotl's completion type keeps it.
    budget = char_budget(cfg, tokenizer) * (SPLIT_PIECES if strategy == "split" else 1)
    cut = [cut_to_budget(segments, budget) for _, segments in rendered]
    encoded = encode_many(tokenizer, [segments for segments, _ in cut], cfg.train_on_inputs)
    examples = []
    for (row, _), (segments, chars), enc in zip(rendered, cut, encoded, strict=True):
        example = Example(source.key, row.where, segments, enc.input_ids, enc.labels, chars_before_cut=chars)
        for kept in apply_length_rule(cfg, example, source.settings.path, report, strategy):
            if kept.trained_tokens == 0:
                report.no_trained_tokens += 1  # counted and dropped, never an error
                continue
            if cfg.min_sample_len and len(kept.input_ids) < cfg.min_sample_len:
                report.too_short += 1
                continue
            examples.append(kept)
    return examples


SPLIT_PIECES = 64


def length_strategy(cfg: DataSettings, dataset: DatasetSettings) -> str:
    """What happens to a row over sequence_len: the config's rule; unset, drop, but split a
    completion dataset's rows into pieces (axolotl's completion type does so)."""
    given = cfg.excess_length_strategy
    if given is None:
        return "split" if dataset.type == "completion" and not dataset.format else "drop"
    return "error" if given == "raise" else given


def drop_duplicates(examples: list[Example], report: DataReport) -> list[Example]:
    """dataset_exact_deduplication: the first of rows with equal ids and labels is kept (counted)."""
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    kept = []
    for example in examples:
        key = (tuple(example.input_ids), tuple(example.labels))
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(example)
    return kept


def char_budget(cfg: DataSettings, tokenizer: Any) -> int:
    """Characters that surely make more than sequence_len tokens: no token covers more characters
    than the vocabulary's longest token string, so twice that per token leaves a wide margin."""
    try:
        longest = max(map(len, tokenizer.get_vocab()), default=1)
    except (AttributeError, NotImplementedError):
        longest = 64
    return 2 * max(longest, 1) * cfg.sequence_len


def cut_to_budget(segments: list[Segment], budget: int) -> tuple[list[Segment], int]:
    """Segments cut to `budget` characters, and the row's length when it was cut (else 0).

    A row far longer than sequence_len (a 10 MB row) is cut before tokenizing: tokenizing it
    whole takes seconds and gigabytes, and the length rule drops or truncates it anyway. The cut
    text still has more than sequence_len tokens, so the rule applies as to the whole row.
    """
    total = sum(len(segment.text) for segment in segments)
    if total <= budget:
        return segments, 0
    kept: list[Segment] = []
    left = budget
    for segment in segments:
        if len(segment.text) <= left:
            kept.append(segment)
            left -= len(segment.text)
            continue
        if not segment.special and left:
            kept.append(Segment(segment.text[:left], segment.trained, None))
        break
    return kept, total


def apply_length_rule(
    cfg: DataSettings, example: Example, path: str, report: DataReport, strategy: str
) -> list[Example]:
    """The example as it is, truncated, split into pieces, or none (dropped): `strategy` as
    length_strategy gives it; raises for `error`."""
    limit = cfg.sequence_len
    # A row cut before tokenizing counts as too long even should its cut text (through a
    # normalizer that drops characters) come to sequence_len tokens or fewer: never trained uncounted.
    if len(example.input_ids) <= limit and not example.chars_before_cut:
        return [example]
    report.too_long += 1
    if strategy == "split":
        report.split_long += 1
        return [_piece(example, start, limit) for start in range(0, len(example.input_ids), limit)]
    if strategy == "error":
        size = f"{len(example.input_ids)} tokens"
        if example.chars_before_cut:
            size = f"{example.chars_before_cut:,} characters (more than {len(example.input_ids)} tokens)"
        raise DataError(
            f"{example.key} ({path}) {example.where}: {size}, over sequence_len {limit}",
            hint="raise sequence_len, or set excess_length_strategy: drop | truncate",
        )
    if strategy == "drop":
        report.dropped_too_long += 1
        return []
    report.truncated += 1
    example.input_ids = example.input_ids[:limit]
    example.labels = example.labels[:limit]
    example.truncated = True
    return [example]


def _piece(example: Example, start: int, limit: int) -> Example:
    ids = example.input_ids[start : start + limit]
    labels = [IGNORE_INDEX, *example.labels[start + 1 : start + limit]]  # its first token is never predicted
    return Example(example.key, example.where, example.segments, ids, labels, truncated=True)


# ---------------------------------------------------------------------------------------------
# The whole pipeline


def read_sources(datasets: list[DatasetSettings], prefix: str, limit: int | None = None) -> list[Source]:
    return [read_source(f"{prefix}[{i}]", settings, limit) for i, settings in enumerate(datasets)]


def encode_sources(
    cfg: FtConfig, sources: list[Source], tokenizer: Any, report: DataReport, shuffle: bool = False
) -> list[Example]:
    """The sources' examples, concatenated; with `shuffle` (the training data, not a preview),
    shuffled (seeded) each before or all after concatenating, as the config says."""
    examples: list[Example] = []
    for source in sources:
        report.rows_read += len(source.rows)
        encoded = encode_source_maybe_in_processes(cfg, source, tokenizer, report)
        if shuffle and cfg.shuffle_before_merging_datasets:
            random.Random(cfg.seed).shuffle(encoded)
        examples += encoded
    if cfg.dataset_exact_deduplication:
        examples = drop_duplicates(examples, report)
    if shuffle and cfg.shuffle_merged_datasets and not cfg.curriculum_sampling:
        random.Random(cfg.seed).shuffle(examples)
    return examples


PARALLEL_MIN_ROWS = 2000
"""Rows per process below which starting processes costs more than it saves."""


def encode_source_maybe_in_processes(
    cfg: FtConfig, source: Source, tokenizer: Any, report: DataReport
) -> list[Example]:
    """encode_source, in `dataset_processes` processes for a large source (the same examples, in the
    same order, and the same counts as in one process)."""
    processes = min(cfg.dataset_processes or 1, len(source.rows) // PARALLEL_MIN_ROWS)
    if processes < 2:
        return encode_source(cfg, source, tokenizer, report)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(source.rows) // processes)
    parts = [replace(source, rows=source.rows[i : i + size]) for i in range(0, len(source.rows), size)]
    # fork: the workers share the parent's imports and tokenizer instead of loading them again.
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_encode_part, [(cfg, part, tokenizer) for part in parts]))
    examples: list[Example] = []
    for part_examples, part_report, error in results:
        if error is not None:
            raise DataError(error[0], hint=error[1])
        examples += part_examples
        _add_counts(report, part_report)
    return examples


def _encode_part(
    args: tuple[FtConfig, Source, Any],
) -> tuple[list[Example], DataReport, tuple[str, str | None] | None]:
    cfg, source, tokenizer = args
    report = DataReport()
    try:
        return encode_source(cfg, source, tokenizer, report), report, None
    except DataError as err:  # sent back as text: an exception with its own arguments may not unpickle
        return [], report, (err.message, err.hint)


def _add_counts(into: DataReport, part: DataReport) -> None:
    into.bad_rows += part.bad_rows
    for name in ("too_long", "dropped_too_long", "truncated", "split_long", "too_short", "no_trained_tokens"):
        setattr(into, name, getattr(into, name) + getattr(part, name))


def check_bad_rows(cfg: DataSettings, report: DataReport) -> None:
    """Fail on bad rows unless skip_invalid_rows; rows without trained tokens are counted."""
    bad = report.bad_rows
    if not bad:
        return
    if cfg.skip_invalid_rows:
        report.skipped_bad = len(bad)
        return
    shown = "\n".join(bad_row_lines(bad))
    raise DataError(
        f"{len(bad)} row(s) cannot be used:\n{shown}",
        hint="fix the rows, or set skip_invalid_rows: true to skip them (the count is reported)",
    )


def dropped_counts(report: DataReport) -> str:
    return (
        f"{report.rows_read} read, {len(report.bad_rows)} bad, {report.dropped_too_long} over sequence_len, "
        f"{report.no_trained_tokens} with nothing to train on"
    )


def split_eval(cfg: FtConfig, examples: list[Item]) -> tuple[list[Item], list[Item]]:
    """Seeded hold-out of `val_set_size` (a share below 1, a row count from 1 up); `examples` are
    encoded rows (SFT examples or preference pairs)."""
    size = cfg.val_set_size
    if not size:
        return examples, []
    count = round(size * len(examples)) if size < 1 else int(size)
    if count >= len(examples):
        raise DataError(
            f"val_set_size: {size} leaves no training rows ({len(examples)} usable rows)",
            hint="use a smaller share or count",
        )
    order = list(range(len(examples)))
    random.Random(cfg.seed).shuffle(order)
    held = set(order[: max(count, 1)])
    return [e for i, e in enumerate(examples) if i not in held], [
        e for i, e in enumerate(examples) if i in held
    ]


def split_training_data(cfg: FtConfig, tokenizer: Any) -> tuple[list[Example], list[Example]]:
    """The training and held-out examples of `datasets`, chosen as `prepare_data` chooses them
    (shuffled as the config says, then `val_set_size` held out unless test_datasets are given,
    then the training rows mixed by each dataset's `weight`), without datasets objects."""
    examples = encode_sources(
        cfg, read_sources(cfg.datasets, "datasets"), tokenizer, DataReport(), shuffle=True
    )
    train, held = (examples, []) if cfg.test_datasets else split_eval(cfg, examples)
    return mix_datasets(cfg.datasets, cfg.seed, train)[0], held


def mix_datasets(
    datasets: list[DatasetSettings], seed: int, examples: list[Example]
) -> tuple[list[Example], list[MixLine]]:
    """Each training dataset's rows `weight` times: whole copies, then a seeded sample for the
    fraction (0.1: a tenth of the rows; 2.5: every row twice and a half more). Training order is
    the trainer's (shuffled), so the mixed rows are simply listed by dataset."""
    mixed: list[Example] = []
    lines = []
    for index, dataset in enumerate(datasets):
        key = f"datasets[{index}]"
        own = [e for e in examples if e.key == key]
        whole, fraction = divmod(dataset.weight, 1)
        picked = random.Random(f"{seed}:{key}").sample(own, round(fraction * len(own)))
        used = own * int(whole) + picked
        mixed += used
        lines.append(MixLine(key, dataset.path, len(own), dataset.weight, len(used)))
    return mixed, lines


def is_weighted(lines: list[MixLine]) -> bool:
    return any(line.weight != 1 for line in lines)


def mix_lines(lines: list[MixLine]) -> list[str]:
    """`datasets[1] general.jsonl: 400 rows x 0.1 = 40 (9.1%)`, one per dataset."""
    total = sum(line.used for line in lines) or 1
    return [
        f"{line.key} {line.path}: {line.rows} rows x {line.weight:g} = {line.used} ({line.used / total:.1%})"
        for line in lines
    ]


def summarize(examples: list[Example], report: SplitReport) -> None:
    report.rows = len(examples)
    report.lengths = [len(e.input_ids) for e in examples]
    report.tokens = sum(report.lengths)
    report.trained_tokens = sum(e.trained_tokens for e in examples)
    report.sequences = len(examples)


def to_dataset(cfg: FtConfig, examples: list[Example], report: SplitReport, pack: bool) -> Any:
    import datasets

    if not pack:
        return datasets.Dataset.from_dict(
            {"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]}
        )
    bins = pack_examples(examples, cfg.sequence_len, report)
    random.Random(cfg.seed).shuffle(bins)
    columns: dict[str, list[Any]] = {"input_ids": [], "labels": [], "seq_lengths": []}
    for members in bins:
        columns["input_ids"].append([t for i in members for t in examples[i].input_ids])
        columns["labels"].append([t for i in members for t in examples[i].labels])
        columns["seq_lengths"].append([len(examples[i].input_ids) for i in members])
    return datasets.Dataset.from_dict(columns)


def pack_examples(examples: list[Example], capacity: int, report: SplitReport) -> list[list[int]]:
    """Example indices grouped into packed sequences; the count and efficiency go to `report`."""
    bins = pack_lengths([len(e.input_ids) for e in examples], capacity)
    report.sequences = len(bins)
    report.packing_efficiency = report.tokens / (len(bins) * capacity) if bins else None
    return bins


def data_fingerprint(cfg: FtConfig, sources: list[Source], tokenizer_digest: str) -> str:
    """The cache key: the data, its settings and the tokenizer (`tokenizer_fingerprint`'s digest)."""
    from ft import __version__

    settings = {key: getattr(cfg, key) for key in DATA_KEYS}
    parts = {
        "layout": CACHE_LAYOUT,
        "ft": __version__,
        "settings": settings,
        "datasets": [s.settings.model_dump(mode="json") for s in sources],
        "content": [s.fingerprint for s in sources],
        "tokenizer": tokenizer_digest,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_digest(sources: list[Source], tokenizer_digest: str) -> str:
    """The datasets' content and the tokenizer, without paths or settings (the config has those)."""
    parts = {"content": [s.fingerprint for s in sources], "tokenizer": tokenizer_digest}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def run_sources(cfg: FtConfig, note: Note = quiet) -> tuple[list[Source], list[Source]]:
    """The training and the eval datasets' rows."""
    note(f"reading {len(cfg.datasets) + len(cfg.test_datasets or [])} dataset(s)")
    return read_sources(cfg.datasets, "datasets"), read_sources(cfg.test_datasets or [], "test_datasets")


def cached_prepared(
    cfg: DataSettings, fingerprint: str, content: str, use_cache: bool, note: Note = quiet
) -> tuple[Path | None, PreparedData | None]:
    """The cache folder for this fingerprint (None without dataset_prepared_path or `use_cache`),
    and what it holds when a preparation finished there (with this run's `content` digest)."""
    cache = cache_dir(cfg, fingerprint) if use_cache else None
    if cache is not None and (cache / REPORT_FILE).exists():
        note(f"prepared data found in {cache}")
        return cache, replace(load_prepared(cache, fingerprint), content=content)
    return cache, None


def no_training_rows(report: DataReport, what: str = "rows") -> DataError:
    return DataError(
        f"datasets: no training {what} left after preparation ({dropped_counts(report)})",
        hint=f"see the bad and too-long {what} with: ft format CONFIG --stats",
    )


def prepare_data(cfg: FtConfig, tokenizer: Any, use_cache: bool = True, note: Note = quiet) -> PreparedData:
    """Training (and eval) rows ready for the trainer, from the cache when nothing changed; `note`
    hears each stage as it starts (reading, tokenizing, packing, saving)."""
    train_sources, eval_sources = run_sources(cfg, note)
    tokenizer_digest = tokenizer_fingerprint(tokenizer)  # hashes the whole vocabulary: once
    fingerprint = data_fingerprint(cfg, train_sources + eval_sources, tokenizer_digest)
    content = content_digest(train_sources + eval_sources, tokenizer_digest)
    cache, cached = cached_prepared(cfg, fingerprint, content, use_cache, note)
    if cached is not None:
        return cached
    report = DataReport()
    rows = sum(len(source.rows) for source in train_sources + eval_sources)
    note(f"rendering, tokenizing and masking {rows:,} rows")
    train_examples = encode_sources(cfg, train_sources, tokenizer, report, shuffle=True)
    eval_examples = encode_sources(cfg, eval_sources, tokenizer, report)
    check_bad_rows(cfg, report)
    if not eval_sources:
        train_examples, eval_examples = split_eval(cfg, train_examples)
    # After the split: a row repeated by its weight never lands in both splits.
    train_examples, report.mix = mix_datasets(cfg.datasets, cfg.seed, train_examples)
    if not train_examples:
        raise no_training_rows(report)
    summarize(train_examples, report.train)
    summarize(eval_examples, report.eval)
    if cfg.sample_packing:
        note(f"packing {len(train_examples):,} rows into sequences of {cfg.sequence_len} tokens")
    train = to_dataset(cfg, train_examples, report.train, cfg.sample_packing)
    evaluation = to_dataset(cfg, eval_examples, report.eval, False) if eval_examples else None
    prepared = PreparedData(train, evaluation, report, fingerprint, content)
    if cache is not None:
        note(f"saving the prepared data in {cache}")
        save_prepared(prepared, cache)
    return prepared


# ---------------------------------------------------------------------------------------------
# Cache: dataset_prepared_path/<fingerprint>/{train,eval,ft_report.json}


def cache_dir(cfg: DataSettings, fingerprint: str) -> Path | None:
    if not cfg.dataset_prepared_path:
        return None
    return Path(cfg.dataset_prepared_path).expanduser() / fingerprint


def save_prepared(prepared: PreparedData, folder: Path) -> None:
    import shutil

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    prepared.train.save_to_disk(str(tmp / "train"))
    if prepared.eval is not None:
        prepared.eval.save_to_disk(str(tmp / "eval"))
    (tmp / REPORT_FILE).write_text(json.dumps(prepared.report.to_json(), indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def load_prepared(folder: Path, fingerprint: str) -> PreparedData:
    import datasets

    saved = json.loads((folder / REPORT_FILE).read_text())
    report = DataReport(
        rows_read=saved["rows_read"],
        skipped_bad=saved["skipped_bad"],
        too_long=saved["too_long"],
        dropped_too_long=saved["dropped_too_long"],
        truncated=saved["truncated"],
        split_long=saved.get("split_long", 0),
        too_short=saved.get("too_short", 0),
        duplicates=saved.get("duplicates", 0),
        no_trained_tokens=saved["no_trained_tokens"],
        mix=[MixLine(**line) for line in saved.get("mix", [])],
        from_cache=str(folder),
    )
    for split in ("train", "eval"):
        values = {k: v for k, v in saved[split].items() if k != "percentiles"}
        setattr(report, split, SplitReport(**values))
    train = datasets.load_from_disk(str(folder / "train"))
    evaluation = datasets.load_from_disk(str(folder / "eval")) if (folder / "eval").exists() else None
    return PreparedData(train, evaluation, report, fingerprint)


# ---------------------------------------------------------------------------------------------
# Previews and statistics (ft format): no datasets objects, bad rows reported instead of raised


def preview_examples(cfg: FtConfig, tokenizer: Any, limit: int | None) -> tuple[list[Example], DataReport]:
    """The first `limit` training rows (all when None) rendered and encoded exactly as trained."""
    report = DataReport()
    sources = read_sources(cfg.datasets, "datasets", limit)
    examples = encode_sources(cfg, sources, tokenizer, report)
    if limit is not None:
        examples = examples[:limit]
    else:  # the whole set (--stats): counted as trained, with each dataset's weight
        examples, report.mix = mix_datasets(cfg.datasets, cfg.seed, examples)
    summarize(examples, report.train)
    if cfg.sample_packing and examples:
        pack_examples(examples, cfg.sequence_len, report.train)
    return examples, report


def prompt_and_completion(segments: list[Segment]) -> tuple[str, str]:
    """The text before the first trained segment, and the rest."""
    first = next((i for i, s in enumerate(segments) if s.trained), len(segments))
    return "".join(s.text for s in segments[:first]), "".join(s.text for s in segments[first:])


def summary_lines(report: DataReport) -> list[str]:
    """What the data preparation did (`ft train`, `ft preprocess`): nothing dropped without a word."""
    train, held = report.train, report.eval
    origin = f" (cached in {report.from_cache})" if report.from_cache else ""
    lines = [
        f"data: {train.rows} training rows in {train.sequences} sequences, {train.tokens:,} tokens "
        f"({train.trained_tokens:,} trained); {held.rows} eval rows{origin}"
    ]
    if train.packing_efficiency is not None:
        lines.append(f"packing efficiency {train.packing_efficiency:.3f}")
    if len(report.mix) > 1 or is_weighted(report.mix):
        lines += ["training mix:", *(f"  {line}" for line in mix_lines(report.mix))]
    for label, count in (
        ("bad rows skipped", report.skipped_bad),
        ("rows over sequence_len dropped", report.dropped_too_long),
        ("rows truncated to sequence_len", report.truncated),
        ("rows over sequence_len split into sequence_len pieces", report.split_long),
        ("rows under min_sample_len dropped", report.too_short),
        ("duplicate rows dropped", report.duplicates),
        ("rows with no token left to train on dropped", report.no_trained_tokens),
    ):
        if count:
            lines.append(f"{label}: {count}")
    if report.skipped_bad:
        lines += bad_row_lines(report.bad_rows)
    return lines


def bad_row_lines(bad: list[BadRow]) -> list[str]:
    """The first few bad rows, one indented line each, and how many more."""
    lines = [f"  {row}" for row in bad[:BAD_ROWS_SHOWN]]
    if len(bad) > BAD_ROWS_SHOWN:
        lines.append(f"  ... and {len(bad) - BAD_ROWS_SHOWN} more")
    return lines
