"""Offline checks of the paths a config names: nothing is loaded and the network is never used.

A local path must exist and be of the right kind (a model folder holds config.json, an adapter
folder adapter_config.json, ...); a Hub id is checked for its form only (`org/name`), since
whether it exists can only be asked of the Hub. A reference counts as local when it starts with
`.`, `/` or `~`, exists, or ends in a file extension ft reads (`data.jsonl`), so that a mistyped
file name is reported as missing rather than sent to the Hub.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ft.errors import FtError
from ft.sources import HUB_ID, PACKAGE_SCHEME, resolve_package_file

DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt")
MODEL_SUFFIXES = (".gguf", ".safetensors", ".bin")
HUB_FORM = "a Hub id has the form org/name"


def check_paths(data: Mapping[str, Any]) -> list[str]:
    """Problems with the local paths and Hub ids of a raw config mapping, as `key: message` lines."""
    return [f"{key}: {message}" for key, message in _path_problems(data)]


def _path_problems(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key in ("base_model", "base_model_config"):
        yield from _named(key, data.get(key), _model_problem)
    yield from _named("tokenizer_config", data.get("tokenizer_config"), _tokenizer_problem)
    yield from _named("lora_model_dir", data.get("lora_model_dir"), _adapter_problem)
    yield from _named("resume_from_checkpoint", data.get("resume_from_checkpoint"), _folder_problem)
    yield from _named("deepspeed", data.get("deepspeed"), _deepspeed_problem)
    for list_key in ("datasets", "test_datasets"):
        items = data.get(list_key)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, Mapping):
                check = partial(_dataset_problem, has_ds_type=bool(item.get("ds_type")))
                yield from _named(f"{list_key}[{index}].path", item.get("path"), check)


def _named(key: str, value: Any, check: Callable[[str], str | None]) -> Iterator[tuple[str, str]]:
    # A value of the wrong type is the schema's to report; an empty one means "not set".
    if isinstance(value, str) and value:
        problem = check(value)
        if problem:
            yield key, problem


def _looks_local(ref: str, suffixes: tuple[str, ...]) -> bool:
    path = Path(ref).expanduser()
    return ref.startswith((".", "/", "~")) or path.exists() or path.suffix.lower() in suffixes


def _missing(ref: str) -> str:
    return f"{ref!r} does not exist (check the path; {HUB_FORM})"


def _hub_form(ref: str, what: str) -> str | None:
    if HUB_ID.match(ref):
        return None
    return f"{ref!r} is neither an existing local {what} nor a Hub id ({HUB_FORM})"


def _model_problem(ref: str) -> str | None:
    """base_model: a folder with config.json, a .gguf file, pkg://DIST/FILE, or a Hub id."""
    if ref.startswith(PACKAGE_SCHEME):
        try:
            resolve_package_file(ref)
        except FtError as err:
            return err.message + (f" ({err.hint})" if err.hint else "")
        return None
    if not _looks_local(ref, MODEL_SUFFIXES):
        return _hub_form(ref, "model")
    path = Path(ref).expanduser()
    if not path.exists():
        return _missing(ref)
    if path.is_file():
        return (
            None
            if path.suffix.lower() == ".gguf"
            else f"{ref!r} is a file: give a model folder or a .gguf file"
        )
    if not (path / "config.json").is_file():
        return f"{ref!r} has no config.json: give the folder of a saved model (or a .gguf file)"
    return None


def _tokenizer_problem(ref: str) -> str | None:
    if ref.startswith(PACKAGE_SCHEME) or not _looks_local(ref, MODEL_SUFFIXES):
        return _model_problem(ref)
    path = Path(ref).expanduser()
    if not path.exists():
        return _missing(ref)
    if path.is_file():
        return None if path.suffix.lower() == ".gguf" else f"{ref!r} is a file: give a tokenizer folder"
    names = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")
    if not any((path / name).is_file() for name in names):
        return f"{ref!r} holds no tokenizer (no tokenizer_config.json or tokenizer.json)"
    return None


def _adapter_problem(ref: str) -> str | None:
    if not _looks_local(ref, ()):
        return _hub_form(ref, "adapter folder")
    path = Path(ref).expanduser()
    if not path.is_dir():
        return _missing(ref) if not path.exists() else f"{ref!r} is a file: give the adapter's folder"
    if not (path / "adapter_config.json").is_file():
        return f"{ref!r} has no adapter_config.json: give the folder of a saved LoRA adapter"
    return None


def _folder_problem(ref: str) -> str | None:
    path = Path(ref).expanduser()
    if not path.exists():
        return _missing(ref).replace(f"; {HUB_FORM}", "")
    return None if path.is_dir() else f"{ref!r} is a file: give a checkpoint folder"


def _deepspeed_problem(ref: str) -> str | None:
    path = Path(ref).expanduser()
    if not path.is_file():
        return f"{ref!r} is not a file: give a DeepSpeed JSON config file"
    return None if path.suffix.lower() == ".json" else f"{ref!r} is not a .json file"


def _dataset_problem(ref: str, has_ds_type: bool) -> str | None:
    """datasets[i].path: a data file, a folder, or a Hub dataset id."""
    if not _looks_local(ref, DATA_SUFFIXES):
        return _hub_form(ref, "file or folder")
    path = Path(ref).expanduser()
    if not path.exists():
        return _missing(ref)
    if path.is_file() and not has_ds_type and path.suffix.lower() not in DATA_SUFFIXES:
        return f"{ref!r}: cannot tell the file type from {path.suffix or 'no extension'!r} (set ds_type)"
    return None
