"""The output folder rules of `ft train` and `ft merge` without training: refuse, start over,
resume, and `--force` replacing only folders ft created, by renames, with the old one put back when
the new run fails before its first checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ft.base.errors import FtError, OutputExistsError, TrainingInterrupted
from ft.config.schema import FtConfig
from ft.runs.folder import RUN_KEYS
from ft.runs.outdir import host_name, new_sibling, remove_stale_siblings, stale_siblings
from ft.train.output_dir import claim_run_dir, claimed_run_dir


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


def run_record(step: int) -> str:
    return json.dumps({**dict.fromkeys(RUN_KEYS), "ft_version": "0.1.0", "global_step": step})


def finished_run(run: Path) -> Path:
    checkpoint(run, 8)
    (run / "run.json").write_text(run_record(8))
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
        (run / "run.json").write_text(run_record(2))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert json.loads((run / "run.json").read_text())["global_step"] == 2
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


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def killed_force_run(run: Path) -> Path:
    """The state a `ft train --force` killed (kill -9) before its first checkpoint leaves: the old
    run in a hidden holder named with the dead pid, the new run's marker and metrics in `run`."""
    host = host_name()
    live = run.parent / f".run.ft-replaced-{os.getpid()}-{host}.abc123.old"
    live.mkdir(parents=True)
    os.replace(finished_run(run), live / "run")
    claim_run_dir(make_cfg(run), run, resume=False, force=False)
    holder = live.with_name(f".run.ft-replaced-{dead_pid()}-{host}.abc123.old")
    os.replace(live, holder)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    checkpoint(run, 2, complete=False)
    return holder


def test_old_run_comes_back_after_a_force_run_killed_before_its_first_checkpoint(tmp_path: Path) -> None:
    """H1: the next ft command must not delete the only copy of the old run."""
    run = tmp_path / "run"
    holder = killed_force_run(run)
    notes: list[str] = []
    with claimed_run_dir(make_cfg(run), run, resume=True, force=False, main=True, note=notes.append):
        pass
    assert not holder.exists() and [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (run / "adapter_model.safetensors").read_bytes() == b"old adapter"
    assert "the previous run is back" in notes[0] and "killed before its first checkpoint" in notes[0]


def test_old_run_comes_back_even_when_the_next_command_fails(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = killed_force_run(run)
    notes: list[str] = []
    replace = claimed_run_dir(make_cfg(run), run, resume=False, force=False, main=True, note=notes.append)
    with pytest.raises(OutputExistsError), replace:
        pass
    assert not holder.exists() and (run / "run.json").is_file()
    assert "the previous run is back" in notes[0]  # shown although the command then failed


def test_set_aside_run_is_removed_only_when_the_killed_force_run_left_a_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    leftover = killed_force_run(run)
    checkpoint(run, 4)
    live = new_sibling(run, "replaced", ".old")  # this process: still running, kept
    elsewhere = tmp_path / f".run.ft-replaced-{dead_pid()}-another-host.abc123.old"  # cannot tell: kept
    elsewhere.mkdir()
    # L7: same host name, another PID namespace (a container with --net=host): cannot tell either
    other_ns = tmp_path / f".run.ft-replaced-{dead_pid()}-{host_name().rsplit('-ns', 1)[0]}-ns1.abc123.old"
    other_ns.mkdir()
    assert stale_siblings(run, "replaced") == [leftover]
    claim = claim_run_dir(make_cfg(run), run, resume=True, force=False)
    assert not leftover.exists() and live.exists() and elsewhere.exists() and other_ns.exists()
    assert "left a checkpoint" in claim.notes[0] and claim.resume_from == run / "checkpoint-4"
    foreign = tmp_path / ".run.backup"
    foreign.mkdir()
    assert remove_stale_siblings(run, "replaced") == [] and foreign.exists()


def test_markers_count_by_content_not_name(tmp_path: Path) -> None:
    """H2 (a), (b): a user's run.json, an empty or copied .ft-run.json make nothing ft's."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "run.json").write_text('{"job": "mine"}')
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FtError, match="ft did not create"):
        claim_run_dir(make_cfg(mine), mine, resume=False, force=True)
    with pytest.raises(FtError, match="not a run folder ft created"):
        claim_run_dir(make_cfg(mine), mine, resume=True, force=False)
    p2 = tmp_path / "p2"
    p2.mkdir()
    (p2 / ".ft-run.json").write_text("{}")
    (p2 / "mydata.jsonl").write_text("{}")
    with pytest.raises(OutputExistsError):
        claim_run_dir(make_cfg(p2), p2, resume=False, force=False)
    original = tmp_path / "original"
    claim_run_dir(make_cfg(original), original, resume=False, force=False)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    (copy / "mydata.jsonl").write_text("{}")
    with pytest.raises(OutputExistsError):
        claim_run_dir(make_cfg(copy), copy, resume=False, force=False)
    assert (
        (mine / "notes.txt").is_file()
        and (p2 / "mydata.jsonl").is_file()
        and (copy / "mydata.jsonl").is_file()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "mine", "original", "p2"]


def test_force_and_start_over_refuse_files_ft_does_not_write(tmp_path: Path) -> None:
    """H2 (c): a user's file added to a genuine run folder is named, and nothing moves."""
    run = finished_run(tmp_path / "run")
    (run / "eval-results.txt").write_text("mine")
    (run / "model.gguf").write_text("mine")
    with pytest.raises(FtError, match=r"files ft did not write: eval-results\.txt, model\.gguf") as err:
        claim_run_dir(make_cfg(run), run, resume=False, force=True)
    assert err.value.hint is not None and "move them" in err.value.hint
    unfinished = tmp_path / "unfinished"
    claim_run_dir(make_cfg(unfinished), unfinished, resume=False, force=False)
    (unfinished / "notes.txt").write_text("mine")
    with pytest.raises(FtError, match=r"files ft did not write: notes\.txt"):
        claim_run_dir(make_cfg(unfinished), unfinished, resume=False, force=False)
    assert (unfinished / "notes.txt").is_file() and hidden(tmp_path) == []


def test_everything_a_run_writes_is_on_the_list(tmp_path: Path) -> None:
    from ft.train.output_dir import unknown_entries

    run = finished_run(tmp_path / "run")
    names = [
        "adapter_config.json", "adapter_model.safetensors", "config.yml", "metrics.jsonl", "loss.png",
        "eval.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "chat_template.jinja", "generation_config.json", "config.json", "model-00001-of-00002.safetensors",
        "model.safetensors.index.json", "training_args.bin", "README.md", ".ft-final.tmp",
    ]  # fmt: skip
    for name in names:
        (run / name).write_text("x")
    (run / "runs" / "Nov23_12-00-00").mkdir(parents=True)
    (run / "merged").mkdir()
    assert unknown_entries(run) == ["merged"]  # not a merge of ft's (no ft_merge.json)
    (run / "merged" / "ft_merge.json").write_text("{}")
    (run / "checkpoint-final").mkdir()
    assert unknown_entries(run) == ["checkpoint-final"]


@pytest.mark.parametrize("inside", ["data", "config", "base"])
def test_force_and_start_over_refuse_a_folder_holding_an_input(tmp_path: Path, inside: str) -> None:
    run = finished_run(tmp_path / "run")
    data = (run if inside == "data" else tmp_path) / "data.jsonl"
    data.write_text("{}")
    config = (run if inside == "config" else tmp_path) / "config.yml"  # ft writes config.yml: still an input
    config.write_text("x")
    base = (tmp_path / "run" / "base") if inside == "base" else tmp_path / "base"
    base.mkdir()
    cfg = make_cfg(run, base_model=str(base), datasets=[{"path": str(data)}])
    with pytest.raises(FtError, match=r"holds (datasets|the config|base_model)"):
        claim_run_dir(cfg, run, resume=False, force=True, config_path=config)
    assert data.is_file() and (run / "run.json").is_file() and hidden(tmp_path) == []


def test_resume_requires_a_folder_ft_created(tmp_path: Path) -> None:
    """H3: --resume, or a checkpoint inside output_dir, in a folder without ft's marker."""
    user = tmp_path / "user"
    checkpoint(user, 7)
    (user / "metrics.jsonl").write_text('text\n{"step": 99}\n')
    with pytest.raises(FtError, match="not a run folder ft created"):
        claim_run_dir(make_cfg(user), user, resume=True, force=False)
    inside = make_cfg(user, resume_from_checkpoint=str(user / "checkpoint-7"))
    with pytest.raises(FtError, match="not a run folder ft created"):
        claim_run_dir(inside, user, resume=False, force=False)
    assert (user / "metrics.jsonl").read_text() == 'text\n{"step": 99}\n'


def test_resume_from_a_checkpoint_elsewhere_follows_the_start_rules(tmp_path: Path) -> None:
    other = checkpoint(tmp_path / "other", 4)
    run = finished_run(tmp_path / "run")
    cfg = make_cfg(run, resume_from_checkpoint=str(other))
    with pytest.raises(OutputExistsError):
        claim_run_dir(cfg, run, resume=False, force=False)
    assert (run / "adapter_model.safetensors").read_bytes() == b"old adapter"
    fresh = tmp_path / "fresh"
    claim = claim_run_dir(make_cfg(fresh, resume_from_checkpoint=str(other)), fresh, resume=True, force=False)
    assert claim.resume_from == other and (fresh / ".ft-run.json").is_file()


def test_resuming_a_finished_run_makes_it_unfinished_first(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    claim = claim_run_dir(make_cfg(run), run, resume=True, force=False)
    assert claim.resume_from == run / "checkpoint-8"
    assert not (run / "run.json").exists()
    marker = json.loads((run / ".ft-run.json").read_text())
    assert marker["run_dir"] == str(run.resolve()) and marker["pid"] == os.getpid()
    assert any("unfinished again" in note for note in claim.notes)


def test_a_live_run_is_not_started_over_or_replaced(tmp_path: Path) -> None:
    """M6: .ft-run.json names the process; another live ft train there is refused."""
    run = tmp_path / "run"
    claim_run_dir(make_cfg(run), run, resume=False, force=False)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        marker = json.loads((run / ".ft-run.json").read_text())
        (run / ".ft-run.json").write_text(json.dumps({**marker, "pid": other.pid}))
        for resume, force in ((False, False), (False, True), (True, False)):
            with pytest.raises(FtError, match=rf"a run is in progress in .* \(pid {other.pid}\)"):
                claim_run_dir(make_cfg(run), run, resume=resume, force=force)
    finally:
        other.kill()
        other.wait()
    claim = claim_run_dir(make_cfg(run), run, resume=False, force=False)  # dead now: started over
    assert "starting it over" in claim.notes[0]


def test_other_ranks_only_find_the_checkpoint(tmp_path: Path) -> None:
    """M7: in DDP, ranks other than 0 neither inspect nor change the folder."""
    run = finished_run(tmp_path / "run")
    partial = checkpoint(run, 12, complete=False)
    claim = claim_run_dir(make_cfg(run), run, resume=True, force=False, main=False)
    assert claim.resume_from == run / "checkpoint-8" and partial.exists() and (run / "run.json").exists()
    claim = claim_run_dir(make_cfg(run), run, resume=False, force=True, main=False)
    assert claim.resume_from is None and claim.replaced is None and hidden(tmp_path) == []


def test_full_disk_at_the_start_is_a_clear_error(tmp_path: Path) -> None:
    """M3: writing .ft-run.json fails (a file size limit stands in for a full disk)."""
    import resource
    import signal

    from ft.runs.outdir import WriteFailedError

    run = tmp_path / "run"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8, hard))
    try:
        with pytest.raises(WriteFailedError, match="cannot write") as err:
            claim_run_dir(make_cfg(run), run, resume=False, force=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert err.value.hint is not None and "free some disk space" in err.value.hint


def test_signals_wait_during_set_aside_and_restore(tmp_path: Path) -> None:
    """M1: a signal inside signals_held arrives after it (or is dropped, and named), also when
    another thread could take it (ft train has many: a signal mask would hold back none)."""
    import signal
    import threading

    from ft.runs.outdir import restore, set_aside, signals_held

    run = finished_run(tmp_path / "run")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    steps: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt), signals_held():
            holder = set_aside(run, "replaced")
            os.kill(os.getpid(), signal.SIGINT)
            run.mkdir()
            (run / ".ft-run.json").write_text("{}")
            steps.append("set aside")
        with signals_held(drop=True) as dropped:
            os.kill(os.getpid(), signal.SIGTERM)
            restore(holder, run)
            steps.append("restored")
    finally:
        stop.set()
        other.join()
    assert steps == ["set aside", "restored"] and dropped == ["SIGTERM"]
    assert (run / "adapter_model.safetensors").read_bytes() == b"old adapter" and hidden(tmp_path) == []


def test_merge_force_only_over_a_merge_of_fts(tmp_path: Path) -> None:
    from ft.export.merge import check_output
    from ft.runs.folder import RunInfo

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
