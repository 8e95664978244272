"""`--resume` that follows the user: the config and data a run started with are checked (changes
refused unless --allow-changes, then recorded), a run folder copied or moved elsewhere resumes, and
run.json keeps the first start and every resume. Unit tests here; the end to end run is in
test_run_record.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ft.base.errors import FtError, OutputExistsError
from ft.config.load import dump_config
from ft.train.output_dir import claim_run_dir, marker_of, record_data_content
from ft.train.resume import check_data_change, config_changes, flatten
from test_force import checkpoint, finished_run, make_cfg


def test_flatten_and_changes_leave_out_where_the_run_and_data_live() -> None:
    saved = {
        "output_dir": "/a/run",
        "max_steps": 5,
        "learning_rate": 0.0002,
        "lora_target_modules": ["q_proj", "v_proj"],
        "datasets": [{"path": "/a/data.jsonl", "type": "alpaca"}],
        "dataset_prepared_path": "/a/cache",
    }
    assert flatten(saved)["datasets[0].type"] == "alpaca"
    assert flatten(saved)["lora_target_modules"] == ["q_proj", "v_proj"]
    moved = {**saved, "output_dir": "/b/run", "dataset_prepared_path": None}
    moved["datasets"] = [{"path": "/b/data.jsonl", "type": "alpaca"}]
    assert config_changes(saved, moved) == {}
    changed = {**moved, "max_steps": 50, "lora_target_modules": ["q_proj"], "new_key_of_a_later_ft": 1}
    assert config_changes(saved, changed) == {
        "lora_target_modules": [["q_proj", "v_proj"], ["q_proj"]],
        "max_steps": [5, 50],
    }


def started_run(run: Path, **cfg: object) -> Path:
    """An unfinished run as ft train leaves it: marker, config.yml, one complete checkpoint."""
    claim = claim_run_dir(make_cfg(run, **cfg), run, resume=False, force=False)
    (run / "config.yml").write_text(dump_config(make_cfg(run, **cfg)))
    record_data_content(claim, "data-v1")
    checkpoint(run, 4)
    return run


def test_resume_refuses_a_changed_config_unless_allowed(tmp_path: Path) -> None:
    run = started_run(tmp_path / "run", max_steps=5)
    first_start = marker_of(run)["started_at"]  # type: ignore[index]
    with pytest.raises(FtError) as caught:
        claim_run_dir(make_cfg(run, max_steps=50, learning_rate=0.001), run, resume=True, force=False)
    message = caught.value.message
    assert "--resume: the config differs from the one" in message
    assert "max_steps: 5 -> 50" in message and "learning_rate: 0.0002 -> 0.001" in message
    assert "--allow-changes" in (caught.value.hint or "")
    assert marker_of(run)["started_at"] == first_start  # nothing changed by the refusal  # type: ignore[index]

    claim = claim_run_dir(make_cfg(run, max_steps=50), run, resume=True, force=False, allow_changes=True)
    assert claim.started_at == first_start
    [entry] = claim.resumes
    assert entry["from_checkpoint"] == "checkpoint-4" and entry["step"] == 4
    assert entry["changes"] == {"max_steps": [5, 50]}
    assert claim.data_content == "data-v1"
    assert any("--allow-changes: resuming with 1 changed key(s): max_steps" in n for n in claim.notes)
    marker = json.loads((run / ".ft-run.json").read_text())
    assert marker["started_at"] == first_start and marker["resumes"] == claim.resumes


def test_data_changes_are_refused_unless_allowed() -> None:
    assert check_data_change("a", "a", allow_changes=False) == {}
    assert check_data_change(None, "b", allow_changes=False) == {}  # a run that recorded none
    with pytest.raises(FtError, match="training data changed"):
        check_data_change("a", "b", allow_changes=False)
    assert check_data_change("a", "b", allow_changes=True) == {"data": ["a", "b"]}


def test_a_finished_run_resumed_keeps_its_first_start_and_history(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    record.update(
        started_at="2020-01-01T00:00:00+00:00", resumes=[{"at": "x", "from_checkpoint": "c", "step": 1}]
    )
    (run / "run.json").write_text(json.dumps(record))
    claim = claim_run_dir(make_cfg(run), run, resume=True, force=False)
    assert claim.started_at == "2020-01-01T00:00:00+00:00"
    assert [r["from_checkpoint"] for r in claim.resumes] == ["c", "checkpoint-8"]
    assert not (run / "run.json").exists()


def test_a_copied_or_moved_run_folder_resumes_but_is_never_deleted_as_ft_s(tmp_path: Path) -> None:
    original = started_run(tmp_path / "original")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)  # cp -a / rsync: the marker names the original folder
    moved = tmp_path / "moved"
    original.rename(moved)

    for folder in (copy, moved):
        # Not ft's to replace or start over (the marker was written for another folder) ...
        with pytest.raises(FtError, match="ft did not create"):
            claim_run_dir(make_cfg(folder), folder, resume=False, force=True)
        with pytest.raises(OutputExistsError) as caught:
            claim_run_dir(make_cfg(folder), folder, resume=False, force=False)
        assert "copied or moved here: continue it with --resume" in (caught.value.hint or "")
        # ... but its run goes on.
        claim = claim_run_dir(make_cfg(folder), folder, resume=True, force=False)
        assert claim.resume_from == folder / "checkpoint-4"
        assert any(f"copied or moved from {tmp_path / 'original'}" in note for note in claim.notes)
        assert marker_of(folder) is not None  # the marker now names this folder
    assert (copy / "checkpoint-4").is_dir() and (moved / "checkpoint-4").is_dir()
