"""pydantic's validation errors in ft's words: one `key.path: message` line per key.

`lora_r: must be greater than 0, got -8` rather than `Input should be greater than 0`; the errors
of a union's members (`bf16: true | false | auto`) become one line; an unknown key gets a
did-you-mean when a schema key is close, and then the key it was meant for is not also reported
missing. A secret-looking key's value is never shown.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ft.base.redact import is_secret_key, secret_key_hint
from ft.config.axolotl_table import known_keys
from ft.config.schema import DatasetSettings, FtConfig


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


def _is_union(annotation: Any) -> bool:
    return (
        get_origin(annotation) in (Union, UnionType)
        and len([arg for arg in get_args(annotation) if arg is not type(None)]) > 1
    )


def _without_member_tags(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    """pydantic puts the member type of a union right after the field's name (`bf16.bool`,
    `datasets[0].data_files.list[str]`); only there, as the user's own keys may be named
    `int` or `lora[r]` too."""
    kept: list[int | str] = []
    for position, part in enumerate(loc):
        before = loc[:position]
        field = _field_for(before) if before and isinstance(before[-1], str) else None
        if isinstance(part, str) and field is not None and _is_union(field.annotation):
            continue
        kept.append(part)
    return tuple(kept)


def _field_for(loc: Sequence[int | str]) -> FieldInfo | None:
    """The schema field at `loc` (`lora_r`, `datasets[0].type`), if it names one."""
    keys = [part for part in loc if isinstance(part, str)]
    model = _model_for(loc)
    depth = 2 if model is DatasetSettings else 1
    return model.model_fields.get(keys[-1]) if len(keys) == depth else None


def _show(value: Any, loc: Sequence[int | str]) -> str:
    """The offending value, short; a secret-looking key's text is never shown."""
    if isinstance(value, str) and any(is_secret_key(part) for part in loc if isinstance(part, str)):
        return "a value (not shown)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, datetime.date):
        return f"{value.isoformat()} (YAML reads it as a date; quote it)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(annotation: Any) -> str:
    """What a field takes, in words: `true, false or 'auto'`, `a whole number`, `text or a list`."""
    choices = _choices(annotation)
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def _choices(annotation: Any) -> list[str]:
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is Literal:
        return [repr(a) for a in args]
    if origin in (Union, UnionType):
        choices = [choice for arg in args for choice in _choices(arg)]
        return [c for c in choices if not (c == "a whole number" and "a number" in choices)]
    if origin in (list, tuple):
        return ["a list"]
    if origin is dict or annotation is dict:
        return ["a mapping (key: value)"]
    plain = {bool: ["true", "false"], int: ["a whole number"], float: ["a number"], str: ["text"]}
    return plain.get(annotation, ["a mapping of keys"])


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


EMPTY_HINTS = {
    "base_model": "give a Hub id or a local folder",
    "datasets": "give at least one dataset (- path: ...)",
    "path": "give a data file, a folder or a Hub dataset id",
}
"""What to write for a required key given with no value (`base_model:`)."""


def _message(error: Any, loc: Sequence[int | str], union: bool) -> str:
    """pydantic's error in ft's words: what the key takes and the value it got."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = _show(value, loc)
    field = _field_for(loc)
    if field is not None and (union or (kind == "value_error" and isinstance(value, bool))):
        # A bool for a number is refused by the schema's own validator, in general words.
        return f"expected {_describe(field.annotation)}, got {got}"
    if value is None and kind.endswith("_type"):
        return _empty(loc, kind)
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


def _empty(loc: Sequence[int | str], kind: str) -> str:
    """`base_model: is empty: give a Hub id or a local folder`, `lora_target_modules[0]: is empty: expected text`."""
    if loc and str(loc[-1]) in EMPTY_HINTS:
        return f"is empty: {EMPTY_HINTS[str(loc[-1])]}"
    field = _field_for(loc) if loc and isinstance(loc[-1], str) else None
    expected = _describe(field.annotation) if field else EXPECTED.get(kind.split("_")[0], "a value")
    return f"is empty: expected {expected}"


def _given_empty(given: Mapping[str, Any] | None, loc: Sequence[int | str]) -> bool:
    """Whether the raw config has the key at `loc` with no value (`base_model:`)."""
    holder: Any = given
    for part in loc[:-1]:
        if isinstance(part, int) and isinstance(holder, list) and part < len(holder):
            holder = holder[part]
        elif isinstance(part, str) and isinstance(holder, Mapping):
            holder = holder.get(part)
        else:
            return False
    return bool(loc) and isinstance(holder, Mapping) and loc[-1] in holder and holder[loc[-1]] is None


def validation_problems(errors: Sequence[Any], given: Mapping[str, Any] | None = None) -> list[str]:
    """One `key.path: message` line per key: the errors of a union's members become one line, and
    a required key is not reported missing when an unknown key beside it is its typo, and a
    member's error about the whole value gives way to another member's inside it (`data_files:
    [1]` is a list with a bad item, not text).

    `given`: the config as written, before empty values were dropped (axolotl reads `key:` as not
    set), so that a required key given with no value is reported as empty rather than missing."""
    grouped: dict[tuple[int | str, ...], list[Any]] = {}
    member_errors: set[tuple[int | str, ...]] = set()
    for error in errors:
        loc = _without_member_tags(error.get("loc", ()))
        grouped.setdefault(loc, []).append(error)
        if len(loc) < len(error.get("loc", ())):
            member_errors.add(loc)
    inside = {loc[:end] for loc in grouped for end in range(1, len(loc))}
    meant = {
        (*loc[:-1], close)
        for loc, found in grouped.items()
        if found[0].get("type") == "extra_forbidden" and (close := _close_key(loc))
    }
    return [
        _problem(loc, found, _given_empty(given, loc))
        for loc, found in grouped.items()
        if not (found[0].get("type") == "missing" and loc in meant)
        and not (loc in member_errors and loc in inside)
    ]


def _close_key(loc: tuple[int | str, ...]) -> str | None:
    """ft's key the unknown one was meant for, else an axolotl key it was meant for."""
    if not loc:
        return None
    model = _model_for(loc)
    axolotl = known_keys()["dataset" if model is DatasetSettings else "top"]
    for known in (list(model.model_fields), list(axolotl)):
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75)
        if close:
            return close[0]
    return None


def _problem(loc: tuple[int | str, ...], errors: list[Any], given_empty: bool) -> str:
    error = errors[0]
    if given_empty and error.get("type") == "missing":
        return f"{_format_loc(loc)}: {_empty(loc, 'missing')}"
    if error.get("type") == "extra_forbidden":
        if loc and is_secret_key(str(loc[-1])):
            return f"{_format_loc(loc)}: a secret in the config file: {secret_key_hint(str(loc[-1]))}"
        close = _close_key(loc)
        suggestion = f" (did you mean {close!r}?)" if close else ""
        return f"{_format_loc(loc)}: unknown key{suggestion}"
    return f"{_format_loc(loc)}: {_message(error, loc, union=len(errors) > 1)}"
