"""Usage errors (a bad option value, an unknown option or command, a missing argument) are one
message and exit code 2 from `ft.cli.app.main`, never a traceback."""

from __future__ import annotations

import pytest

from ft.cli.app import main

QUICKSTART = "configs/quickstart.yml"


def run_main(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", QUICKSTART, "--mfu", "abc"], "Invalid value for '--mfu'"),
        (["plan", QUICKSTART, "--bogus"], "No such option: --bogus"),
        (["format", QUICKSTART, "-n", "abc"], "Invalid value for '-n'"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["validate"], "Missing argument 'CONFIG'"),
        ([], "Usage:"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], expected: str, capsys) -> None:
    assert run_main(args) == 2
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert expected.lower() in shown.lower(), shown
    assert "Traceback" not in shown


def test_version_exits_0(capsys) -> None:
    assert run_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ft ")


def test_help_imports_neither_heavy_libraries_nor_the_schema() -> None:
    """`ft --help` stays instant: command modules import their stages inside the commands."""
    import subprocess
    import sys

    code = (
        "import sys; from ft.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "slow = ('torch', 'transformers', 'peft', 'trl', 'datasets', 'pydantic', 'ft.config.schema')\n"
        "print([m for m in slow if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_help_offers_shell_completion_and_chat_help_lists_its_commands(capsys) -> None:
    assert run_main(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out
    assert run_main(["chat", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "/reset starts a new conversation" in shown and "/exit or /quit" in shown and "/help" in shown


def test_plan_names_the_memory_of_a_gpu_outside_the_table(capsys) -> None:
    """Said before the model's config is read (no Hub, no cache needed)."""
    assert run_main(["plan", "configs/llama2-qlora.yml", "--gpu", "V100"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no single GPU of the table matches 'V100'" in err
    assert "--memory 32GB" in err


def test_plan_shows_the_gpu_asked_for_first(capsys) -> None:
    import json

    base = "base_model=tests/data/plan/llama-2-7b"
    assert run_main(["plan", "configs/llama2-qlora.yml", "--set", base, "--gpu", "L4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["gpus"][0]["name"] == "L4" and plan["budget"]["name"] == "L4"
    assert run_main(["plan", "configs/llama2-qlora.yml", "--set", base, "--gpu", "H100"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "GiB │" in line]
    assert "H100 SXM (--gpu)" in rows[0]
