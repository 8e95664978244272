"""The few exception types the library raises; `ft.cli.app` alone turns them into messages and exit codes."""

from __future__ import annotations


class FtError(Exception):
    """A user mistake or an unusable input: shown as a message with exit code 2, no traceback.

    `hint` is the fix when we know it; it is printed on its own line after the message.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


MAX_SHOWN_PROBLEMS = 50
"""A file of thousands of unknown keys would print thousands of lines: the first ones suffice."""


class ConfigError(FtError):
    """The config file cannot be read or does not validate.

    `problems` holds one `key.path: message` line per problem, all of them at once.
    """

    def __init__(self, problems: list[str], source: str | None = None, hint: str | None = None) -> None:
        where = f"{source}: " if source else ""
        count = len(problems)
        head = f"{where}{count} problem{'s' if count != 1 else ''} in the config"
        shown = [f"  {p}" for p in problems[:MAX_SHOWN_PROBLEMS]]
        if count > MAX_SHOWN_PROBLEMS:
            shown.append(f"  ... and {count - MAX_SHOWN_PROBLEMS} more (fix these first)")
        super().__init__(head + "\n" + "\n".join(shown), hint)
        self.problems = problems
        self.source = source


class DataError(FtError):
    """A dataset cannot be loaded or has rows that cannot be trained on."""


class OutputExistsError(FtError):
    """An output folder exists and would be overwritten."""


class ModelLoadError(FtError):
    """A model or tokenizer cannot be loaded (missing files, unreachable Hub id, unsupported format)."""


class TrainingInterrupted(FtError):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint."""

    exit_code = 130
