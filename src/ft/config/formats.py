"""The names of the prompt formats and chat templates a config may give, and the rules of a custom
`format` string: what the schema checks. The formats themselves render in `ft.data.prompts`, which
a test keeps in step with these names."""

from __future__ import annotations

import string

PROMPT_FORMATS = ("alpaca", "llama2_chat", "phi2", "phi3", "completion", "chat_template")
"""Dataset `type` values. A dataset may also give a custom `format` string instead."""


CHAT_TEMPLATES = ("alpaca", "llama2_chat", "phi2", "phi3", "tokenizer_default")
"""Templates that render chat `messages`: one of ft's formats, or the tokenizer's own chat template."""


CUSTOM_FIELDS = frozenset({"instruction", "input", "system"})


def custom_format_problems(text: str) -> list[str]:
    """What is wrong with a custom format string (unknown or positional fields, bad braces)."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as err:
        return [f"{err} (write {{{{ and }}}} for literal braces)"]
    problems = []
    for field in fields:
        if field not in CUSTOM_FIELDS:
            problems.append(
                f"unknown field {{{field}}}: use " + ", ".join(f"{{{f}}}" for f in sorted(CUSTOM_FIELDS))
            )
    return problems
