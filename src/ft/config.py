"""Load, override and validate a config file into an `FtConfig`, reporting every problem at once.

Problems are `key.path: message` lines (`datasets[1].type: ...`); an unknown key gets a
did-you-mean when a schema key is close. No heavy library is imported here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ft.axolotl_keys import translate_axolotl
from ft.config_checks import check_paths
from ft.config_yaml import parse_yaml, read_yaml_mapping
from ft.errors import ConfigError
from ft.schema import DatasetSettings, FtConfig, rule_problems

SECRET_KEY = re.compile(r"(token|secret|password|api_key)", re.IGNORECASE)
OVERRIDE_PATH = re.compile(r"^([A-Za-z_]\w*)(?:\[(\d+)\])?(?:\.([A-Za-z_]\w*))?$")


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_for(loc: Sequence[int | str]) -> type[BaseModel]:
    return DatasetSettings if loc and loc[0] in ("datasets", "test_datasets") else FtConfig


def _is_member_tag(part: int | str) -> bool:
    """pydantic adds the member type of a union to an error's location (`bf16.bool`); not a key."""
    return isinstance(part, str) and (part in ("bool", "int", "float", "str") or "[" in part)


def _field_for(loc: Sequence[int | str]) -> FieldInfo | None:
    """The schema field at `loc` (`lora_r`, `datasets[0].type`), if it names one."""
    keys = [part for part in loc if isinstance(part, str)]
    model = _model_for(loc)
    depth = 2 if model is DatasetSettings else 1
    return model.model_fields.get(keys[-1]) if len(keys) == depth else None


def _show(value: Any, loc: Sequence[int | str]) -> str:
    """The offending value, short; a secret-looking key's text is never shown."""
    if isinstance(value, str) and SECRET_KEY.search(_format_loc(loc)):
        return "a value (not shown)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(annotation: Any) -> str:
    """What a field takes, in words: `true or false or 'auto'`, `a whole number`, ..."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        parts = [_describe(a) for a in args]
        if parts[:2] == ["a whole number", "a number"]:
            parts = parts[1:]
        return " or ".join(parts)
    if origin in (list, tuple):
        return "a list"
    if origin is dict or annotation is dict:
        return "a mapping (key: value)"
    plain = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    return plain.get(annotation, "a mapping of keys")


BOUNDS = {
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
}
EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
    "list": "a list",
    "dict": "a mapping (key: value)",
    "model": "a mapping of keys",
}


def _message(error: Any, loc: Sequence[int | str], union: bool) -> str:
    """pydantic's error in ft's words: what the key takes and the value it got."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    got = _show(error.get("input"), loc)
    field = _field_for(loc)
    if union and field is not None:
        return f"expected {_describe(field.annotation)}, got {got}"
    if kind in BOUNDS:
        bounds = {name: _show(bound, ()) for name, bound in ctx.items()}
        return f"must be {BOUNDS[kind].format(**bounds)}, got {got}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind == "missing":
        return "required, but not given"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s), got none"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the listed values')}, got {got}"
    prefix = kind.split("_")[0]
    if prefix in EXPECTED and kind.endswith(("_type", "_parsing", "_from_float")):
        return f"expected {EXPECTED[prefix]}, got {got}"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _problems(errors: Sequence[Any]) -> list[str]:
    """One `key.path: message` line per key: the errors of a union's members become one line, and
    a required key is not reported missing when an unknown key beside it is its typo."""
    grouped: dict[tuple[int | str, ...], list[Any]] = {}
    for error in errors:
        loc = tuple(part for part in error.get("loc", ()) if not _is_member_tag(part))
        grouped.setdefault(loc, []).append(error)
    meant = {
        (*loc[:-1], close)
        for loc, found in grouped.items()
        if found[0].get("type") == "extra_forbidden" and (close := _close_key(loc))
    }
    return [
        _problem(loc, found)
        for loc, found in grouped.items()
        if not (found[0].get("type") == "missing" and loc in meant)
    ]


def _close_key(loc: tuple[int | str, ...]) -> str | None:
    known = list(_model_for(loc).model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75)
    return close[0] if close else None


def _problem(loc: tuple[int | str, ...], errors: list[Any]) -> str:
    error = errors[0]
    if error.get("type") == "extra_forbidden":
        close = _close_key(loc)
        suggestion = f" (did you mean {close!r}?)" if close else ""
        return f"{_format_loc(loc)}: unknown key{suggestion}"
    return f"{_format_loc(loc)}: {_message(error, loc, union=len(errors) > 1)}"


def apply_override(data: dict[str, Any], override: str) -> str | None:
    """Apply one `key=value` (value parsed as a YAML scalar); returns a problem line or None."""
    key, sep, raw = override.partition("=")
    match = OVERRIDE_PATH.match(key.strip())
    if not sep or not match:
        return f"--set {override}: expected key=value, e.g. lora_r=32 or datasets[0].path=x.jsonl"
    try:
        value = parse_yaml(raw, "--set") if raw.strip() else None
    except ConfigError as err:
        return f"--set {override}: {err.problems[0]}"
    top, index, sub = match.group(1), match.group(2), match.group(3)
    if index is None:
        if sub is not None:
            return f"--set {override}: nested keys need an index, e.g. datasets[0].path"
        data[top] = value
        return None
    items = data.get(top)
    if not isinstance(items, list) or int(index) >= len(items) or not isinstance(items[int(index)], dict):
        return f"--set {override}: {top}[{index}] does not exist"
    if sub is None:
        return f"--set {override}: name the key inside {top}[{index}]"
    items[int(index)][sub] = value
    return None


def read_config(
    path: str | Path, overrides: Sequence[str] = (), check_files: bool = True
) -> tuple[FtConfig, list[str]]:
    """The validated config and notes for the user; raises ConfigError with every problem.

    Every check runs on the same raw mapping, so that one run lists the field errors, the
    cross-field rules, the axolotl keys ft does not support and (with `check_files`) missing
    local paths together, sorted by key path.
    """
    source = Path(path)
    data = read_yaml_mapping(source)
    problems = [p for p in (apply_override(data, o) for o in overrides) if p]
    if problems:
        raise ConfigError(problems, source=str(source))
    translated = translate_axolotl(data)
    problems = translated.problems + rule_problems(translated.data)
    if check_files:
        problems += check_paths(translated.data)
    try:
        cfg = FtConfig.model_validate(translated.data)
    except ValidationError as err:
        problems += _problems([e for e in err.errors() if e.get("loc") or not problems])
    if problems:
        raise ConfigError(sorted(set(problems), key=lambda p: (_path_order(p), p)), source=str(source))
    return cfg, translated.notes


def _path_order(problem: str) -> list[Any]:
    """Sort key: `datasets[2]` before `datasets[10]`, then alphabetical."""
    key = problem.split(":", 1)[0]
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"\[(\d+)\]", key)]


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> FtConfig:
    """The validated config without the notes and without the file checks: for reloading a
    saved config (a run folder's), whose relative paths may not hold from the current folder."""
    return read_config(path, overrides, check_files=False)[0]


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if SECRET_KEY.search(key) and isinstance(value, str) and value:
        return "***"
    return value


def dump_config(cfg: FtConfig, redact: bool = True) -> str:
    """The resolved config as YAML, every default filled in; loads back to an equal FtConfig."""
    data = cfg.model_dump(mode="json")
    return yaml.safe_dump(_redact(data) if redact else data, sort_keys=False)
