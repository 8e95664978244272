"""The offline quickstart: the config validates, the data is reproducible, `ft train` runs on SmolLM2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "quickstart.yml"
EXAMPLES = REPO / "examples"
FT = [sys.executable, "-m", "ft"]


def ft(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([*FT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def read_messages(path: Path) -> list[list[dict[str, str]]]:
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_quickstart_config_validates() -> None:
    result = ft("validate", str(CONFIG.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dataset_files_are_what_the_seeded_script_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(EXAMPLES / "make_dates.py"), "--out", str(tmp_path)], check=True)
    for name in ("dates_train.jsonl", "dates_heldout.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name


def test_heldout_dates_never_occur_in_training() -> None:
    train = read_messages(EXAMPLES / "dates_train.jsonl")
    heldout = read_messages(EXAMPLES / "dates_heldout.jsonl")
    assert (len(train), len(heldout)) == (400, 40)
    train_answers = {turns[1]["content"] for turns in train}
    assert not train_answers & {turns[1]["content"] for turns in heldout}
    for turns in train + heldout:
        assert [t["role"] for t in turns] == ["user", "assistant"]
        assert len(turns[1]["content"]) == 10 and turns[1]["content"][4] == "-"
