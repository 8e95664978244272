"""Load, override and validate a config file into an `FtConfig`, reporting every problem at once.

Problems are `key.path: message` lines (`datasets[1].type: ...`): the YAML's own (ft.config.yaml_reader),
the schema's in ft's words (ft.config.messages), the cross-field rules' (ft.config.schema) and the local
paths' (ft.config.checks). No heavy library is imported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ft.base.errors import ConfigError
from ft.base.redact import redact
from ft.config.axolotl import translate_axolotl
from ft.config.checks import check_paths
from ft.config.messages import validation_problems
from ft.config.schema import FtConfig, rule_problems
from ft.config.yaml_reader import parse_yaml, read_yaml_mapping

OVERRIDE_PATH = re.compile(r"^([A-Za-z_]\w*)(?:\[(\d+)\])?(?:\.([A-Za-z_]\w*))?$")


SHOWN_OVERRIDE = 300
"""Characters of a `--set` shown in a problem line."""


def apply_override(data: dict[str, Any], override: str) -> str | None:
    """Apply one `key=value` (value parsed as a YAML scalar); returns a problem line or None."""
    key, sep, raw = override.partition("=")
    match = OVERRIDE_PATH.match(key.strip())
    shown = _shown(override)
    if not sep or not match:
        return f"--set {shown}: expected key=value, e.g. lora_r=32 or datasets[0].path=x.jsonl"
    try:
        value = parse_yaml(raw, "--set") if raw.strip() else None
    except ConfigError as err:
        return f"--set {shown}: {err.problems[0].removeprefix('(top level): ')}"
    top, index, sub = match.group(1), match.group(2), match.group(3)
    if index is None:
        if sub is not None:
            return f"--set {shown}: nested keys need an index, e.g. datasets[0].path"
        data[top] = value
        return None
    items = data.get(top)
    if not isinstance(items, list) or int(index) >= len(items) or not isinstance(items[int(index)], dict):
        return f"--set {shown}: {top}[{index}] does not exist"
    if sub is None:
        return f"--set {shown}: name the key inside {top}[{index}]"
    items[int(index)][sub] = value
    return None


def _shown(override: str) -> str:
    """A `--set` as typed, with control characters escaped and a long one cut."""
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in override)
    return text if len(text) <= SHOWN_OVERRIDE else text[: SHOWN_OVERRIDE - 3] + "..."


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
    if translated.refusals:
        # A feature ft lacks (DPO, multimodal, ...): that is the one thing to say about the config.
        raise ConfigError(translated.refusals, source=str(source))
    problems = translated.problems + rule_problems(translated.data)
    if check_files:
        problems += check_paths(translated.data)
    try:
        cfg = FtConfig.model_validate(translated.data)
    except ValidationError as err:
        errors = [e for e in err.errors() if e.get("loc") or not problems]
        problems += validation_problems(errors, given=data)
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


def dump_config(cfg: FtConfig) -> str:
    """The resolved config as YAML, every default filled in; loads back to an equal FtConfig.

    The schema has no field for a secret (they come from the environment); `redact` is the guard
    should one ever be added.
    """
    return yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False)
