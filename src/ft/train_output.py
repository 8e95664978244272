"""The output_dir of `ft train`: start it, start it over, resume it, or replace it (--force).

- Missing or empty: the run starts there; `.ft-run.json` marks it as ft's from the first moment.
- ft's own unfinished run with no complete checkpoint (stopped or killed before its first save):
  nothing there could be resumed, so it is cleared and started over, with a note.
- Anything else is refused without `--resume` or `--force`.
- `--resume`: the newest complete checkpoint; incomplete ones (killed or disk full while saving)
  are removed with a note, never resumed from.
- `--force`: only over a folder ft created (ft.outdir). The old folder is renamed aside, not
  deleted. When the new run ends, the old one is deleted if the new one finished or has a
  checkpoint to resume from, and put back otherwise (stopped or failed before its first save). A
  set-aside folder left by a killed `--force` run is removed by the next `ft train` into the same
  output_dir.
Only the main process (rank 0) touches the filesystem.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ft.errors import FtError, OutputExistsError
from ft.outdir import (
    is_empty,
    owned_by_ft,
    refuse_foreign,
    refuse_holding_cwd,
    remove_stale_siblings,
    restore,
    set_aside,
)
from ft.run import (
    METRICS_JSONL,
    RUN_MARKER,
    RUN_MARKERS,
    checkpoint_complete,
    checkpoint_step,
    has_work_to_keep,
    incomplete_checkpoints,
    newest_checkpoint,
    trim_metrics,
    write_json_atomic,
)
from ft.schema import FtConfig

REPLACED_TAG = "replaced"
Note = Callable[[str], None]


@dataclass
class RunDirClaim:
    """What `claim_run_dir` decided: where to resume from, and the old run set aside by --force."""

    run_dir: Path
    resume_from: Path | None = None
    replaced: Path | None = None
    notes: list[str] = field(default_factory=list)


def resume_checkpoint(cfg: FtConfig, run_dir: Path) -> Path:
    if cfg.resume_from_checkpoint:
        checkpoint = Path(cfg.resume_from_checkpoint).expanduser()
        if not checkpoint.is_dir():
            raise FtError(f"resume_from_checkpoint: {checkpoint} is not a folder")
        if not checkpoint_complete(checkpoint):
            raise FtError(
                f"resume_from_checkpoint: {checkpoint} is incomplete (no readable trainer_state.json): "
                "its save was cut short",
                hint="point it at an earlier checkpoint-N folder",
            )
        return checkpoint
    newest = newest_checkpoint(run_dir)
    if newest is None:
        raise FtError(
            f"--resume: {run_dir} has no complete checkpoint-N folder to resume from",
            hint="run without --resume to start the run (over)",
        )
    return newest


def claim_run_dir(
    cfg: FtConfig, run_dir: Path, *, resume: bool, force: bool, main: bool = True
) -> RunDirClaim:
    """Check the output folder and make it ready; raises OutputExistsError or FtError."""
    claim = RunDirClaim(run_dir)
    _claim_into(claim, cfg, resume=resume, force=force, main=main)
    return claim


def _claim_into(claim: RunDirClaim, cfg: FtConfig, *, resume: bool, force: bool, main: bool) -> None:
    """Fills `claim` as it goes, so that a signal half-way leaves a record of what was moved."""
    run_dir = claim.run_dir
    if main:
        for stale in remove_stale_siblings(run_dir, REPLACED_TAG):
            claim.notes.append(
                f"removed {stale}: a run set aside by an earlier ft train --force that was killed"
            )
    if resume or cfg.resume_from_checkpoint:
        claim.resume_from = resume_checkpoint(cfg, run_dir)
        if main:
            _tidy_for_resume(claim, claim.resume_from)
        return
    if is_empty(run_dir):
        _start(run_dir, main)
        return
    ours = owned_by_ft(run_dir, RUN_MARKERS)
    if ours and not has_work_to_keep(run_dir):
        refuse_holding_cwd(run_dir)
        claim.notes.append(f"{run_dir} held an unfinished run with no checkpoint: starting it over")
        if main:
            shutil.rmtree(run_dir)
        _start(run_dir, main)
        return
    if not force:
        raise OutputExistsError(
            f"output_dir: {run_dir} already exists and is not empty",
            hint="continue it with --resume, replace it with --force, or set another output_dir"
            if ours
            else "set another output_dir (ft did not create this folder, so --force will not replace it)",
        )
    refuse_foreign(run_dir, RUN_MARKERS, "output_dir")
    refuse_holding_cwd(run_dir)
    if main:
        claim.replaced = set_aside(run_dir, REPLACED_TAG)
        claim.notes.append(f"--force: the previous run is set aside in {claim.replaced} until this one ends")
    _start(run_dir, main)


def _tidy_for_resume(claim: RunDirClaim, checkpoint: Path) -> None:
    """Incomplete checkpoints go; metrics logged after the checkpoint go (trained again)."""
    for partial in incomplete_checkpoints(claim.run_dir):
        shutil.rmtree(partial, ignore_errors=True)
        claim.notes.append(f"removed {partial.name}: incomplete (its save was cut short)")
    step = checkpoint_step(checkpoint)
    dropped = trim_metrics(claim.run_dir / METRICS_JSONL, step)
    if dropped:
        claim.notes.append(f"{METRICS_JSONL}: {dropped} rows after step {step} left out (trained again)")


def _start(run_dir: Path, main: bool) -> None:
    if not main:
        return
    from ft import __version__

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(run_dir / RUN_MARKER, {"ft_version": __version__, "started_at": started})


def settle_replaced(claim: RunDirClaim, succeeded: bool) -> str | None:
    """After the run: delete the set-aside old run once the new one has a checkpoint (or finished);
    otherwise put it back. Returns a note for the user, or None when nothing was set aside."""
    holder = claim.replaced
    if holder is None:
        return None
    claim.replaced = None
    if succeeded or newest_checkpoint(claim.run_dir) is not None:
        shutil.rmtree(holder, ignore_errors=True)
        return (
            None
            if succeeded
            else f"--force: the previous run in {claim.run_dir} is deleted (the new one has a checkpoint)"
        )
    restore(holder, claim.run_dir)
    return f"--force: the new run stopped before its first checkpoint; the previous run is back in {claim.run_dir}"


@contextmanager
def claimed_run_dir(
    cfg: FtConfig, run_dir: Path, *, resume: bool, force: bool, main: bool, note: Note
) -> Iterator[RunDirClaim]:
    """claim_run_dir, then settle a --force replacement however the run ends."""
    claim = RunDirClaim(run_dir)
    try:
        _claim_into(claim, cfg, resume=resume, force=force, main=main)
        for line in claim.notes:
            note(line)
        yield claim
    except BaseException:
        message = settle_replaced(claim, succeeded=False)
        if message:
            note(message)
        raise
    settle_replaced(claim, succeeded=True)
