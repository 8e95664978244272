"""The import layers of src/ft (pyproject.toml's [tool.importlinter], run by `make lint`) hold, and
they fail the build when broken: each case below adds one forbidden import to a copy of the package
and checks that `lint-imports` names it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
    )


def test_the_package_keeps_its_layers() -> None:
    out = lint_imports(REPO / "src", REPO / "pyproject.toml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


VIOLATIONS = {
    "a stage imports the CLI": (
        "train/runner.py",
        "import ft.cli.app",
        "ft.train is not allowed to import ft.cli",
    ),
    "one stage imports another": (
        "export/merge.py",
        "import ft.infer.generate",
        "ft.export is not allowed to import ft.infer",
    ),
    "config imports a stage below the CLI": (
        "config/schema.py",
        "import ft.data.prompts",
        "ft.config is not allowed to import ft.data",
    ),
    "the base imports the config": (
        "base/errors.py",
        "import ft.config.schema",
        "ft.base is not allowed to import ft.config",
    ),
    "a cycle inside a package": (
        "data/rows.py",
        "import ft.data.pipeline",
        "No cycles are allowed in ft.data",
    ),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_a_forbidden_import_breaks_the_lint(case: str, tmp_path: Path) -> None:
    module, statement, expected = VIOLATIONS[case]
    shutil.copytree(
        REPO / "src" / "ft", tmp_path / "src" / "ft", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "ft" / module
    # Inside a function, as a lazy import would be: those count as much as top-level ones.
    target.write_text(target.read_text() + f"\n\ndef _added_by_the_test():\n    {statement}  # noqa\n")
    out = lint_imports(tmp_path / "src", tmp_path / "pyproject.toml")
    assert out.returncode != 0
    assert expected in out.stdout, out.stdout
    assert "BROKEN" in out.stdout
