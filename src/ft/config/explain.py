"""`ft validate CONFIG --explain`: each key of a config and what ft does with it, from the same
table that reads axolotl's keys (ft.config.axolotl_table)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ft.base.redact import redact
from ft.config.axolotl_table import (
    DATASET_SAME_AS_FT,
    SAME_AS_FT,
    KeyStatus,
    dataset_key_status,
    leaves_it_off,
    top_key_status,
)
from ft.config.schema import DatasetSettings, FtConfig

SHOWN = 60
"""Characters of a value shown."""


@dataclass(frozen=True)
class KeyLine:
    key: str
    value: str
    kind: str
    """ft, mapped, ignored, unsupported, unknown, or unset (axolotl's key left empty or at its default)."""
    what: str


def explain(data: Mapping[str, Any]) -> list[KeyLine]:
    """One line per key of the raw config mapping, datasets' keys under their entries."""
    lines = []
    for key, value in data.items():
        if key in ("datasets", "test_datasets") and isinstance(value, list):
            count = f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}"
            lines.append(KeyLine(key, count, "ft", "each entry below"))
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    lines += _dataset_lines(f"{key}[{index}]", item)
            continue
        status = top_key_status(key, FtConfig.model_fields)
        if key in FtConfig.model_fields and not _read_by_code(key, value):
            status = KeyStatus("supported")
        lines.append(
            _line(key, value, status.kind, _what(key, status, FtConfig.model_fields, SAME_AS_FT), key)
        )
    return lines


def _read_by_code(key: str, value: Any) -> bool:
    """ft keys whose axolotl value is read first: `gradient_checkpointing: offload`, `tokens: {...}`."""
    return (key == "gradient_checkpointing" and isinstance(value, str)) or (
        key == "tokens" and isinstance(value, Mapping)
    )


def _dataset_lines(where: str, item: Mapping[str, Any]) -> Iterator[KeyLine]:
    for key, value in item.items():
        status = dataset_key_status(key, DatasetSettings.model_fields)
        what = _what(key, status, DatasetSettings.model_fields, DATASET_SAME_AS_FT)
        yield _line(f"{where}.{key}", value, status.kind, what, key)


def _what(key: str, status: Any, fields: Mapping[str, Any], same: Mapping[str, Any]) -> str:
    if key in fields and status.kind == "supported":
        return fields[key].description or ""
    if status.feature:
        return f"refused: {status.feature} is not available in ft"
    if status.kind == "unknown":
        return "no axolotl release defines it: refused as an unknown key"
    return status.note


def _line(path: str, value: Any, kind: str, what: str, key: str) -> KeyLine:
    shown = json.dumps(redact(value, key), default=str)
    shown = shown if len(shown) <= SHOWN else shown[: SHOWN - 3] + "..."
    unset = value is None or value is False or value == "" or value == [] or value == {}
    if kind in ("ignored", "unsupported", "mapped") and (unset or leaves_it_off(key, value)):
        return KeyLine(path, shown, "unset", "left unset or at axolotl's default: nothing to do")
    labels = {"supported": "ft"}
    return KeyLine(path, shown, labels.get(kind, kind), what)
