"""Values read from data rows: text as it is, and a JSON name for any other value (for messages)."""

from __future__ import annotations

from typing import Any

from ft.data.prompts import RenderError


def as_text(value: Any, what: str) -> str:
    """A text value; a whole number becomes its digits (42 -> "42": one spelling, nothing lost).

    Other numbers are refused: 0.10, 1e-5 or 4.0 from a padded integer column would come back
    as different text than the file holds, so the row is bad rather than silently changed.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise RenderError(f"{what} is a number ({value!r}), not text: quote it to keep its exact spelling")
    raise RenderError(f"{what} is {describe(value)}, not text")


def describe(value: Any) -> str:
    """A JSON name for a value's type, for messages about rows."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"
