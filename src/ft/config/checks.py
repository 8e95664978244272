"""Offline checks of the paths a config names: nothing is loaded and the network is never used.

A local path must exist and be of the right kind (a model folder holds config.json and
safetensors weights, an adapter folder adapter_config.json, a .json data file is text, ...); a
Hub id is checked for its form only (`org/name`), since whether it exists can only be asked of
the Hub. A reference counts as local when it starts with `.`, `/` or `~`, exists, or ends in a
file extension ft reads (`data.jsonl`), so that a mistyped file name is reported as missing
rather than sent to the Hub. What a local model may make ft run is checked here too: pickle
weights only with `allow_pickle_weights`, custom model code only with `trust_remote_code`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ft.base.errors import FtError
from ft.config.hub import cached_file
from ft.config.schema import is_true
from ft.config.sources import HUB_ID, PACKAGE_SCHEME, resolve_package_file
from ft.config.yaml_reader import UTF16_BOMS

DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt")
MODEL_SUFFIXES = (".gguf", ".safetensors", ".bin")
HUB_FORM = "a Hub id has the form org/name"
PICKLE_REFUSED = (
    "pickle files can run code when loaded: convert them to safetensors, "
    "or set allow_pickle_weights: true if you trust their source"
)
TEXT_KINDS = {".json": "JSON", ".jsonl": "JSON lines", ".csv": "CSV", ".txt": "text"}
BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "a gzip archive",
    b"PAR1": "a Parquet file",
    b"GGUF": "a GGUF model file",
}


def check_paths(data: Mapping[str, Any]) -> list[str]:
    """Problems with the local paths and Hub ids of a raw config mapping, as `key: message` lines."""
    return [f"{key}: {message}" for key, message in _path_problems(data)]


def _path_problems(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    allow_pickle = is_true(data.get("allow_pickle_weights"))
    trust_code = is_true(data.get("trust_remote_code"))
    revision = data.get("revision") if isinstance(data.get("revision"), str) else None
    base_model = partial(
        _base_model_problem, allow_pickle=allow_pickle, trust_remote_code=trust_code, revision=revision
    )
    yield from _named("base_model", data.get("base_model"), base_model)
    yield from _named("ref_model", data.get("ref_model"), base_model)
    yield from _named("base_model_config", data.get("base_model_config"), _model_problem)
    yield from _named("tokenizer_config", data.get("tokenizer_config"), _tokenizer_problem)
    adapter = partial(_adapter_problem, allow_pickle=allow_pickle)
    yield from _named("lora_model_dir", data.get("lora_model_dir"), adapter)
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


def _base_model_problem(
    ref: str, allow_pickle: bool, trust_remote_code: bool, revision: str | None
) -> str | None:
    """base_model: as `_model_problem`, and a local folder must hold weights ft may load; a Hub
    model already in the local cache must not need custom code that is not allowed."""
    problem = _model_problem(ref)
    path = Path(ref).expanduser()
    if problem or ref.startswith(PACKAGE_SCHEME):
        return problem
    if path.is_dir():
        return local_model_problem(path, allow_pickle, trust_remote_code)
    if not _looks_local(ref, MODEL_SUFFIXES) and not trust_remote_code:
        code = custom_code_needed(_cached_hub_config(ref, revision))
        if code:
            return f"{ref!r} (in the local Hugging Face cache) {_needs_code(code)}"
    return None


def _cached_hub_config(repo_id: str, revision: str | None) -> dict[str, Any]:
    """A Hub model's config.json when the local cache holds it (never downloaded), else {}. Read
    by the cache's layout: importing huggingface_hub here would fix its offline mode before
    ft.config.hub decides it."""
    try:
        cached = cached_file(repo_id, "config.json", revision)
        config = json.loads(cached.read_text(encoding="utf-8")) if cached is not None else {}
    except (OSError, ValueError):  # an id the cache cannot hold, an unreadable file: not this check's to say
        return {}
    return config if isinstance(config, dict) else {}


def _needs_code(code: str) -> str:
    return (
        f"needs its own Python code ({code}, from config.json auto_map) and trust_remote_code is false: "
        "ft runs no code from a model unless told (set trust_remote_code: true if you trust it)"
    )


def local_model_problem(folder: Path, allow_pickle: bool, trust_remote_code: bool) -> str | None:
    """Why the weights of a local model folder (with config.json) must not or cannot be loaded, or None.

    Checked before anything loads: safetensors weights (pickle ones only when allowed), and
    custom model code (config.json `auto_map`) only when trust_remote_code is set.
    """
    ref = str(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except OSError as err:
        return f"{ref!r}: cannot read config.json ({err.strerror or err})"
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"{ref!r}: config.json is not valid JSON ({err})"
    if not isinstance(config, dict):
        return f"{ref!r}: config.json is not a JSON object"
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
        if not pickles:
            return f"{ref!r} holds no model weights (no model.safetensors or pytorch_model.bin)"
        if not allow_pickle:
            return f"{ref!r} holds only pickle weights ({', '.join(pickles)}) and {PICKLE_REFUSED}"
    code = None if trust_remote_code else custom_code_needed(config)
    return f"{ref!r} {_needs_code(code)}" if code else None


def custom_code_needed(config: Mapping[str, Any]) -> str | None:
    """The custom class a model's config.json names in `auto_map`, when transformers has no built-in
    class for its `model_type` (a known type loads the built-in class and runs none of that code)."""
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, Mapping) or not auto_map:
        return None
    if config.get("model_type") in builtin_model_types():
        return None
    return str(
        auto_map.get("AutoModelForCausalLM") or auto_map.get("AutoConfig") or next(iter(auto_map.values()))
    )


def builtin_model_types() -> frozenset[str]:
    """The `model_type`s the installed transformers has classes for. Imported only when a local
    config.json has an auto_map; transformers 5's generated table imports without torch."""
    try:
        from transformers.models.auto.auto_mappings import CONFIG_MAPPING_NAMES
    except ImportError:  # transformers before 5: the table lives beside AutoConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    return frozenset(CONFIG_MAPPING_NAMES)


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


def _adapter_problem(ref: str, allow_pickle: bool) -> str | None:
    if not _looks_local(ref, ()):
        return _hub_form(ref, "adapter folder")
    path = Path(ref).expanduser()
    if not path.is_dir():
        return _missing(ref) if not path.exists() else f"{ref!r} is a file: give the adapter's folder"
    if not (path / "adapter_config.json").is_file():
        return f"{ref!r} has no adapter_config.json: give the folder of a saved LoRA adapter"
    pickled = path / "adapter_model.bin"
    if not allow_pickle and pickled.is_file() and not (path / "adapter_model.safetensors").is_file():
        return f"{ref!r} holds only pickle weights (adapter_model.bin) and {PICKLE_REFUSED}"
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
    return _data_kind_problem(ref, path) if path.is_file() and not has_ds_type else None


def _data_kind_problem(ref: str, path: Path) -> str | None:
    """A data file whose first bytes contradict its extension (a .json that is a PNG, a .parquet
    that is text): said here rather than as a parser's error deep in the data step."""
    try:
        with path.open("rb") as stream:
            head = stream.read(4096)
    except OSError as err:
        return f"{ref!r} cannot be read ({err.strerror or err})"
    suffix = path.suffix.lower()
    if suffix in TEXT_KINDS and head.startswith(UTF16_BOMS):
        return f"{ref!r} is UTF-16 text: save it as UTF-8"
    seen = next((what for magic, what in BINARY_MAGIC.items() if head.startswith(magic)), None)
    if suffix == ".parquet" and head and not head.startswith(b"PAR1"):
        found = seen or ("binary data" if b"\x00" in head else "text")
        return f"{ref!r} is not a Parquet file (Parquet files start with PAR1; this one is {found})"
    if suffix in TEXT_KINDS and (seen or b"\x00" in head):
        return f"{ref!r} is {seen or 'binary (it holds NUL bytes)'}, not {TEXT_KINDS[suffix]} text"
    return None
