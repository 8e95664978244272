"""docs/config.md is generated from the schema: it documents every key and is up to date."""

from __future__ import annotations

from ft.config.docs import DOC_PATH, render_reference
from ft.config.schema import DatasetSettings, FtConfig


def test_committed_reference_is_up_to_date() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render_reference(), (
        "docs/config.md is out of date: regenerate it with `.venv/bin/python -m ft.config.docs`"
    )


def test_every_key_is_documented_once() -> None:
    text = render_reference()
    for name in FtConfig.model_fields:
        assert text.count(f"| `{name}` |") == (2 if name in DatasetSettings.model_fields else 1), name
    for name, info in {**FtConfig.model_fields, **DatasetSettings.model_fields}.items():
        assert info.description, f"{name} has no description"
    for name in DatasetSettings.model_fields:
        assert f"| `{name}` |" in text
