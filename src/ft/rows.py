"""Reading dataset rows: local .json/.jsonl/.csv/.parquet/.arrow files, folders saved by `datasets`,
folders of data files, and Hub dataset ids.

JSON and JSON lines are read here rather than by `datasets`, so that an invalid line is one bad
row with its line number (the rest still load) instead of a pyarrow error about the whole file,
and so that `ft format` on a JSON file does not import `datasets` at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.errors import DataError

if TYPE_CHECKING:
    from ft.schema import DatasetSettings

LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


@dataclass(frozen=True)
class Row:
    """One row, or the reason it could not be read (`data` is None then)."""

    where: str
    """`line 12` for JSON lines, `row 12` otherwise (both 1-based)."""
    data: dict[str, Any] | None
    problem: str | None = None


@dataclass
class Source:
    key: str
    """The config key path, e.g. `datasets[1]`."""
    settings: DatasetSettings
    rows: list[Row] = field(default_factory=list)
    fingerprint: str = ""


def is_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).expanduser().exists()


def read_source(key: str, settings: DatasetSettings, limit: int | None = None) -> Source:
    """All rows of one dataset (the first `limit` when given) and a fingerprint of its content."""
    path = settings.path
    if is_local(path):
        local = Path(path).expanduser()
        if not local.exists():
            raise DataError(f"{key}.path: {path!r} does not exist")
        if local.is_file() and _builder(settings, local) == "json":
            rows = list(_read_json_file(local, key, limit))
            return Source(key, settings, rows, _file_digest([local]))
        dataset = _load_local_with_datasets(key, settings, local)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        return Source(key, settings, _dataset_rows(dataset, limit), _file_digest(files))
    dataset = _load_hub(key, settings)
    return Source(key, settings, _dataset_rows(dataset, limit), f"hub:{dataset._fingerprint}")


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


def _read_json_file(path: Path, key: str, limit: int | None) -> Iterator[Row]:
    raw = path.read_bytes()
    head = raw.lstrip()[:1]
    if head == b"[":
        yield from _read_json_array(raw, path, key, limit)
        return
    count = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        if limit is not None and count >= limit:
            return
        count += 1
        yield _json_line(line, f"line {number}")


def _json_line(line: bytes, where: str) -> Row:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return Row(where, None, f"not valid UTF-8 (byte {err.start})")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return Row(where, None, f"invalid JSON: {err.msg} (column {err.colno})")
    if not isinstance(value, dict):
        return Row(where, None, f"a JSON {type(value).__name__}, not an object")
    return Row(where, value)


def _read_json_array(raw: bytes, path: Path, key: str, limit: int | None) -> Iterator[Row]:
    try:
        values = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{key}.path: {path} is not valid JSON: {err}") from err
    for number, value in enumerate(values[:limit] if limit is not None else values, start=1):
        if isinstance(value, dict):
            yield Row(f"row {number}", value)
        else:
            yield Row(f"row {number}", None, f"a JSON {type(value).__name__}, not an object")


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
