"""The output folder rules of `ft train` and `ft merge` without training: refuse, start over,
resume, and `--force` replacing only folders ft created, by renames, with the old one put back when
the new run fails before its first checkpoint."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ft.errors import FtError, OutputExistsError, TrainingInterrupted
from ft.outdir import new_sibling, remove_stale_siblings, stale_siblings
from ft.schema import FtConfig
from ft.train_output import claim_run_dir, claimed_run_dir


def make_cfg(run: Path, **kw: object) -> FtConfig:
    return FtConfig(
        **{"base_model": "org/model", "datasets": [{"path": "data.jsonl"}], "output_dir": str(run), **kw}
    )


def checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    folder = run / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def finished_run(run: Path) -> Path:
    checkpoint(run, 8)
    (run / "run.json").write_text('{"global_step": 8}')
    (run / "adapter_model.safetensors").write_bytes(b"old adapter")
    return run


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_new_and_empty_folders_start_with_ft_marker(tmp_path: Path) -> None:
    run = tmp_path / "run"
    claim = claim_run_dir(make_cfg(run), run, resume=False, force=False)
    assert claim.resume_from is None and claim.replaced is None
    assert json.loads((run / ".ft-run.json").read_text())["ft_version"]
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_run_dir(make_cfg(empty), empty, resume=False, force=False)
    assert (empty / ".ft-run.json").is_file()


def test_existing_run_refused_without_resume_or_force(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with pytest.raises(OutputExistsError, match="already exists") as err:
        claim_run_dir(make_cfg(run), run, resume=False, force=False)
    assert err.value.hint is not None and "--resume" in err.value.hint and "--force" in err.value.hint
    assert (run / "run.json").is_file()


def test_unfinished_run_without_checkpoint_starts_over_without_force(tmp_path: Path) -> None:
    """Killed before its first checkpoint (during data preparation, or kill -9 in the first steps):
    nothing to keep, so a plain re-run starts over; an incomplete checkpoint does not count."""
    run = tmp_path / "run"
    claim_run_dir(make_cfg(run), run, resume=False, force=False)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    checkpoint(run, 2, complete=False)
    with pytest.raises(FtError, match="no complete checkpoint"):
        claim_run_dir(make_cfg(run), run, resume=True, force=False)
    claim = claim_run_dir(make_cfg(run), run, resume=False, force=False)
    assert any("starting it over" in note for note in claim.notes)
    assert sorted(p.name for p in run.iterdir()) == [".ft-run.json"]


def test_resume_takes_newest_complete_checkpoint_and_removes_partial_ones(tmp_path: Path) -> None:
    run = tmp_path / "run"
    claim_run_dir(make_cfg(run), run, resume=False, force=False)
    for step in (2, 10, 4):
        checkpoint(run, step)
    partial = checkpoint(run, 12, complete=False)
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 13))
    )
    claim = claim_run_dir(make_cfg(run), run, resume=True, force=False)
    assert claim.resume_from == run / "checkpoint-10"
    assert not partial.exists()
    assert claim.notes == [
        "removed checkpoint-12: incomplete (its save was cut short)",
        "metrics.jsonl: 2 rows after step 10 left out (trained again)",
    ]
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, 11)
    )
    explicit = make_cfg(run, resume_from_checkpoint=str(checkpoint(run, 14, complete=False)))
    with pytest.raises(FtError, match="incomplete"):
        claim_run_dir(explicit, run, resume=False, force=False)


def test_force_refuses_a_folder_ft_did_not_create(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    checkpoint(mine, 3)  # even one that looks like a trainer's output
    with pytest.raises(OutputExistsError) as err:
        claim_run_dir(make_cfg(mine), mine, resume=False, force=False)
    assert err.value.hint is not None and "--force will not replace it" in err.value.hint
    with pytest.raises(FtError, match=r"ft did not create .*ft will not delete it"):
        claim_run_dir(make_cfg(mine), mine, resume=False, force=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["checkpoint-3", "thesis.tex"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # nothing set aside either
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(FtError, match="is a file ft did not create"):
        claim_run_dir(make_cfg(a_file), a_file, resume=False, force=True)


def test_force_sets_the_old_run_aside_and_deletes_it_after_success(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    notes: list[str] = []
    with claimed_run_dir(make_cfg(run), run, resume=False, force=True, main=True, note=notes.append) as claim:
        assert claim.replaced is not None
        assert (claim.replaced / "run" / "run.json").is_file()  # the old run, whole, beside the new one
        assert sorted(p.name for p in run.iterdir()) == [".ft-run.json"]
        (run / "run.json").write_text('{"global_step": 2}')
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert json.loads((run / "run.json").read_text()) == {"global_step": 2}
    assert "set aside" in notes[0]


def test_force_puts_the_old_run_back_when_the_new_one_fails_before_a_checkpoint(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    notes: list[str] = []
    replace = claimed_run_dir(make_cfg(run), run, resume=False, force=True, main=True, note=notes.append)
    with pytest.raises(TrainingInterrupted), replace:
        (run / "metrics.jsonl").write_text("{}\n")
        raise TrainingInterrupted("stopped by SIGTERM before training started")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (run / "adapter_model.safetensors").read_bytes() == b"old adapter"
    assert not (run / "metrics.jsonl").exists()
    assert "previous run is back" in notes[-1]


def test_force_keeps_the_new_run_once_it_has_a_checkpoint(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    replace = claimed_run_dir(make_cfg(run), run, resume=False, force=True, main=True, note=lambda _: None)
    with pytest.raises(TrainingInterrupted), replace:
        checkpoint(run, 3)
        raise TrainingInterrupted("stopped by SIGINT at step 3")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert sorted(p.name for p in run.iterdir()) == [".ft-run.json", "checkpoint-3"]


def test_set_aside_run_of_a_killed_force_is_removed_next_time(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())
    leftover = tmp_path / f".run.ft-replaced-{pid}-{host}.abc123.old"
    (leftover / "run").mkdir(parents=True)
    live = new_sibling(run, "replaced", ".old")  # this process: still running, kept
    elsewhere = tmp_path / f".run.ft-replaced-{pid}-another-host.abc123.old"  # cannot tell: kept
    elsewhere.mkdir()
    assert stale_siblings(run, "replaced") == [leftover]
    claim = claim_run_dir(make_cfg(run), run, resume=True, force=False)
    assert not leftover.exists() and live.exists() and elsewhere.exists() and "killed" in claim.notes[0]
    foreign = tmp_path / ".run.backup"
    foreign.mkdir()
    assert remove_stale_siblings(run, "replaced") == [] and foreign.exists()
    assert os.getpid() != pid


def test_merge_force_only_over_a_merge_of_fts(tmp_path: Path) -> None:
    from ft.merge import check_output
    from ft.run import RunInfo

    run = RunInfo(tmp_path / "run", {"base_model_path": str(tmp_path / "base")}, make_cfg(tmp_path / "run"))
    out = tmp_path / "out"
    check_output(out, run, force=False)  # missing: fine
    out.mkdir()
    check_output(out, run, force=False)  # empty: fine
    (out / "weights.bin").write_text("someone else's")
    with pytest.raises(OutputExistsError) as err:
        check_output(out, run, force=False)
    assert err.value.hint is not None and "--force will not replace it" in err.value.hint
    with pytest.raises(FtError, match=r"ft did not create \(no ft_merge\.json\)"):
        check_output(out, run, force=True)
    (out / "ft_merge.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="already exists"):
        check_output(out, run, force=False)
    check_output(out, run, force=True)
    assert hidden(tmp_path) == []


def test_force_never_moves_the_current_folder(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    before = Path.cwd()
    os.chdir(run / "checkpoint-8")
    try:
        with pytest.raises(FtError, match="holds the current folder"):
            claim_run_dir(make_cfg(run), run, resume=False, force=True)
    finally:
        os.chdir(before)
    assert (run / "run.json").is_file() and hidden(tmp_path) == []
