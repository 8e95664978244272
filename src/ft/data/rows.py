"""Reading dataset rows: local .json/.jsonl/.csv/.parquet/.arrow files, folders saved by `datasets`,
folders of data files, and Hub dataset ids.

JSON, JSON lines and CSV are read here rather than by `datasets`, so that an invalid line is one
bad row with its line number (the rest still load) instead of a pyarrow or pandas error about the
whole file, and so that `ft format` on these files does not import `datasets` at all. A problem
that leaves nothing after it readable (a cut JSON array, a file that is not UTF-8 throughout
outside JSON lines) is a whole-file DataError naming the line, even with skip_invalid_rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ft.base.errors import DataError

if TYPE_CHECKING:
    from ft.config.schema import DatasetSettings

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
REENCODE_HINT = "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 OLD > NEW)"
CSV_FIELD_LIMIT = 1 << 17
LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


@dataclass(frozen=True)
class Row:
    """One row, or the reason it could not be read (`data` is None then)."""

    where: str
    """1-based: `line 12` for JSON lines; `row 3 (line 12)` for a JSON array's elements and CSV
    records (the data row, header not counted, and the line it starts on); `row 3` otherwise."""
    data: dict[str, Any] | None
    problem: str | None = None


@dataclass
class Source:
    key: str
    """The config key path, e.g. `datasets[1]`."""
    settings: DatasetSettings
    rows: list[Row] = field(default_factory=list)
    fingerprint: str = ""
    columns: list[str] | None = None
    """Every row's columns, for files that have a schema or header (CSV, parquet, arrow, saved
    datasets); None for JSON, whose rows may each have their own."""


def is_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).expanduser().exists()


def read_source(key: str, settings: DatasetSettings, limit: int | None = None) -> Source:
    """All rows of one dataset (the first `limit` when given) and a fingerprint of its content."""
    path = settings.path
    if not is_local(path):
        dataset = _load_hub(key, settings)
        return Source(
            key, settings, _dataset_rows(dataset, limit), f"hub:{dataset._fingerprint}", _columns(dataset)
        )
    local = Path(path).expanduser()
    if not local.exists():
        raise DataError(f"{key}.path: {path!r} does not exist")
    if local.is_file():
        builder = _builder(settings, local)
        if builder == "json":
            return Source(key, settings, list(_read_json_file(local, key, limit)), _file_digest([local]))
        if builder == "csv":
            columns, rows = _read_csv_file(local, key, limit)
            return Source(key, settings, rows, _file_digest([local]), columns)
    dataset = _load_local_with_datasets(key, settings, local)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    return Source(key, settings, _dataset_rows(dataset, limit), _file_digest(files), _columns(dataset))


def _columns(dataset: Any) -> list[str] | None:
    names = getattr(dataset, "column_names", None)
    return list(names) if isinstance(names, list) else None


def _builder(settings: DatasetSettings, path: Path) -> str:
    if settings.ds_type:
        return settings.ds_type
    builder = LOCAL_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(
            f"{path}: cannot tell the file type from {path.suffix or 'no extension'!r}",
            hint="use .json, .jsonl, .csv, .parquet or .arrow, or set ds_type",
        )
    return builder


def _refuse_utf16(raw: bytes, path: Path, key: str) -> None:
    if raw.startswith(UTF16_BOMS):
        raise DataError(f"{key}.path: {path} is UTF-16, not UTF-8", hint=REENCODE_HINT)


def _decode_whole(raw: bytes, path: Path, key: str) -> str:
    """A whole file as text, or a DataError naming the first line that is not UTF-8."""
    _refuse_utf16(raw, path, key)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{key}.path: {path} line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); "
            "the whole file must be one encoding",
            hint=REENCODE_HINT,
        ) from err


def _read_json_file(path: Path, key: str, limit: int | None) -> Iterator[Row]:
    raw = path.read_bytes()
    _refuse_utf16(raw, path, key)
    raw = raw.removeprefix(UTF8_BOM)
    if raw.lstrip()[:1] == b"[":
        yield from _read_json_array(_decode_whole(raw, path, key), path, key, limit)
        return
    lines = raw.split(b"\n")
    _refuse_one_object(raw, lines, path, key)
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if limit is not None and count >= limit:
            return
        count += 1
        yield _json_line(line, f"line {number}", last=number == len(lines))


def _refuse_one_object(raw: bytes, lines: list[bytes], path: Path, key: str) -> None:
    """A pretty-printed JSON object is not JSON lines: said once, rather than as a bad row per
    line (with skipping on, the lines that happen to parse would train)."""
    first = next((line for line in lines if line.strip()), b"")
    if not first.strip().startswith(b"{") or _json_line(first, "").data is not None:
        return
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    if isinstance(value, dict):
        lists = [name for name, item in value.items() if isinstance(item, list)]
        under = f" (the rows may be the list under {lists[0]!r})" if len(lists) == 1 else ""
        raise DataError(
            f"{key}.path: {path} is one JSON object over several lines{under}, not rows",
            hint="write one JSON object per line (JSON lines), or a top-level JSON array of row objects",
        )


def _json_line(line: bytes, where: str, last: bool = False) -> Row:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return Row(where, None, f"not valid UTF-8 (byte 0x{line[err.start]:02x}): {REENCODE_HINT}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        # The last line without a line end: most likely a file cut while it was written.
        cut = "; the file ends without a line end, so it may be cut short" if last else ""
        return Row(where, None, f"invalid JSON: {_json_reason(err)} (column {err.colno}){cut}")
    return _object_row(value, where)


def _object_row(value: Any, where: str) -> Row:
    if isinstance(value, dict):
        return Row(where, value)
    return Row(where, None, f"{_json_kind(value)}, not an object with fields")


def _json_kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return "a JSON " + names.get(type(value), "number")


def _read_json_array(text: str, path: Path, key: str, limit: int | None) -> Iterator[Row]:
    """Elements of a top-level JSON array, one at a time, each with its row and line number.

    A .json file is one JSON value: past a break nothing can be read reliably, so a cut or
    invalid array is a whole-file error (even with skip_invalid_rows), naming the line.
    """
    decoder = json.JSONDecoder()
    pos = _skip_space(text, text.index("[") + 1)
    number, line, counted = 0, 1, 0  # newlines counted up to `counted`: linear, not per row
    while pos < len(text) and text[pos] != "]":
        if limit is not None and number >= limit:
            return
        if number:
            if text[pos] != ",":
                _array_error(text, pos, path, key, "expected ',' or ']' between rows")
            pos = _skip_space(text, pos + 1)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            _array_error(text, err.pos, path, key, _json_reason(err))
        number += 1
        line, counted = line + text.count("\n", counted, pos), pos
        yield _object_row(value, f"row {number} (line {line})")
        pos = _skip_space(text, end)
    if pos >= len(text):
        _array_error(text, pos, path, key, "the array is not closed")
    rest = _skip_space(text, pos + 1)
    if rest < len(text):
        _array_error(text, rest, path, key, "more text after the array's closing ']'")


def _json_reason(err: json.JSONDecodeError) -> str:
    return err.msg.removesuffix(" at")  # "Unterminated string starting at": the column follows


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _array_error(text: str, pos: int, path: Path, key: str, reason: str) -> NoReturn:
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    cut = (
        "; the array is never closed, so the file may be cut short" if not text.rstrip().endswith("]") else ""
    )
    raise DataError(
        f"{key}.path: {path} line {line}: invalid JSON: {reason} (column {column}){cut}",
        hint="a .json file is one JSON value and cannot be read past a break, even with skip_invalid_rows: "
        "fix the file, or write it as JSON lines (one row per line) so that a bad line can be skipped",
    )


def _read_csv_file(path: Path, key: str, limit: int | None) -> tuple[list[str], list[Row]]:
    """The header and rows of a CSV file, every value as text (no type guessing).

    Read here rather than by `datasets` (pandas), which fails on a row with too many fields with
    a message about the whole file, pads a row with too few, and turns `007` into 7.
    """
    text = _decode_whole(path.read_bytes(), path, key)
    old_limit = csv.field_size_limit(max(len(text), CSV_FIELD_LIMIT))  # long texts are rows too
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] | None = None
        rows: list[Row] = []
        line = 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record:
                continue
            if header is None:
                header = _csv_header(record, path, key, reader.line_num)
                continue
            if limit is not None and len(rows) >= limit:
                break
            rows.append(_csv_row(header, record, f"row {len(rows) + 1} (line {start})"))
    except csv.Error as err:
        raise DataError(f"{key}.path: {path} line {reader.line_num}: not readable as CSV: {err}") from err
    finally:
        csv.field_size_limit(old_limit)
    return header or [], rows


def _csv_header(record: list[str], path: Path, key: str, line: int) -> list[str]:
    twice = sorted({name for name in record if record.count(name) > 1})
    if twice:  # a row as a dict would keep only the last of them
        raise DataError(
            f"{key}.path: {path} line {line}: the header names {', '.join(map(repr, twice))} twice"
        )
    return record


def _csv_row(header: list[str], record: list[str], where: str) -> Row:
    if len(record) == len(header):
        return Row(where, dict(zip(header, record, strict=True)))
    joined = any("\n" in value for value in record)
    quote = "; an unclosed quote joins lines" if joined else ""
    fields = f"{len(record)} field{'s' if len(record) != 1 else ''}"
    return Row(where, None, f"{fields}, the header has {len(header)}{quote}")


def _load_local_with_datasets(key: str, settings: DatasetSettings, path: Path) -> Any:
    import datasets

    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if settings.split not in loaded:
                    raise DataError(
                        f"{key}.split: {settings.split!r} is not in {path}",
                        hint="splits: " + ", ".join(loaded),
                    )
                return loaded[settings.split]
            return loaded
        if path.is_dir():
            return datasets.load_dataset(str(path), data_files=settings.data_files, split=settings.split)
        return datasets.load_dataset(_builder(settings, path), data_files=str(path), split="train")
    except DataError:
        raise
    except Exception as err:  # datasets and pyarrow raise many types for unreadable files
        raise DataError(f"{key}.path: cannot read {path}: {_first_line(err)}") from err


def _load_hub(key: str, settings: DatasetSettings) -> Any:
    import datasets

    try:
        return datasets.load_dataset(
            settings.path,
            name=settings.name,
            split=settings.split,
            revision=settings.revision,
            data_files=settings.data_files,
        )
    except Exception as err:  # network, missing split/config, offline cache misses
        raise DataError(
            f"{key}.path: cannot load the Hub dataset {settings.path!r}: {_first_line(err)}",
            hint="offline? the dataset must be in the local cache; or give a local file",
        ) from err


def _dataset_rows(dataset: Any, limit: int | None) -> list[Row]:
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return [Row(f"row {n}", dict(row)) for n, row in enumerate(dataset.to_list(), start=1)]


def _file_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
