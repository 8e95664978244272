"""The output_dir of `ft train`: start it, start it over, resume it, or replace it (--force).

- Missing or empty: the run starts there; `.ft-run.json` marks it as ft's from the first moment. It
  records the folder's own resolved path (a copied marker does not count) and the process id and
  host (a second `ft train` on a folder whose run is alive is refused).
- ft's own unfinished run with no complete checkpoint (stopped or killed before its first save):
  nothing there could be resumed, so it is cleared and started over, with a note.
- Anything else is refused without `--resume` or `--force`.
- `--resume` (or a resume_from_checkpoint inside output_dir): only in a folder ft created. The
  newest complete checkpoint; incomplete ones (killed or disk full while saving) are removed with a
  note, never resumed from. A finished run is first turned back into an unfinished one (run.json
  removed, `.ft-run.json` written), so an interrupted resume never looks finished.
  A resume_from_checkpoint outside output_dir: output_dir follows the start rules above.
- `--force`: only over a folder ft created. The old folder is renamed aside, not deleted. When the
  new run ends, the old one is deleted if the new one finished or has a checkpoint to resume from,
  and put back otherwise (stopped or failed before its first save). A set-aside folder left by a
  killed `--force` run is put back by the next `ft train` into the same output_dir when the killed
  run left nothing to keep, and deleted only when it did.
- Start-over and `--force` delete a folder only when ft's marker holds (content, not name), when
  it holds nothing ft does not write (`RUN_FILES`), and no input of this run (config file, data,
  base model, tokenizer, data cache).
Only the main process (rank 0) inspects or changes the folder; other ranks compute the checkpoint
to resume from.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft.base.errors import FtError, OutputExistsError
from ft.config.schema import FtConfig, TrainingSettings
from ft.runs.folder import (
    FINAL_TMP,
    METRICS_JSONL,
    RUN_JSON,
    RUN_KEYS,
    RUN_MARKER,
    checkpoint_complete,
    checkpoint_step,
    has_work_to_keep,
    incomplete_checkpoints,
    newest_checkpoint,
    read_json,
    trim_metrics,
    utc_now,
    write_json_atomic,
)
from ft.runs.outdir import (
    host_name,
    is_empty,
    pid_alive,
    refuse_holding_cwd,
    restore,
    set_aside,
    signals_held,
    stale_siblings,
    writing,
)

REPLACED_TAG = "replaced"
Note = Callable[[str], None]
START_WRITE_HINT = "free some disk space, then run the same command again"

RUN_FILES = (
    RUN_JSON,
    RUN_MARKER,
    FINAL_TMP,
    "config.yml",
    METRICS_JSONL,
    "loss.png",
    "eval.json",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "training_args.bin",
    "README.md",
    "runs",
    "checkpoint-*",
    "merged",
    ".*.tmp",
    ".*.tmp.png",
)
"""Top-level names ft (and the trainer, tokenizer, TensorBoard logger under it) writes in a run
folder; `merged` is ft merge's default --out. Anything else there is the user's."""


@dataclass
class RunDirClaim:
    """What `claim_run_dir` decided: where to resume from, and the old run set aside by --force.

    `started_at` is the run's first start (a resume keeps it); `resumes` lists every resume so far,
    this one last; `data_content` is the digest of the data the run trained on, when known."""

    run_dir: Path
    resume_from: Path | None = None
    replaced: Path | None = None
    notes: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=utc_now)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    data_content: str | None = None


# ---------------------------------------------------------------------------------------------
# Is this folder ft's, and only ft's?


MARKER_KEYS = frozenset({"ft_version", "started_at", "run_dir"})


def marker_of(run_dir: Path, *, copied: bool = False) -> dict[str, Any] | None:
    """`.ft-run.json` when it is ft's and was written for this very folder; with `copied`, also
    one that came along when the folder was copied or moved (cp -a, rsync): enough to resume the
    run, never to delete the folder."""
    data = read_json(run_dir / RUN_MARKER)
    if data is None or not data.keys() >= MARKER_KEYS:
        return None
    return data if copied or data["run_dir"] == str(run_dir.resolve()) else None


def finished_record_of(run_dir: Path) -> bool:
    """run.json parses and holds every key ft writes there (a user's own run.json does not)."""
    data = read_json(run_dir / RUN_JSON)
    return data is not None and all(key in data for key in RUN_KEYS)


def ft_created(run_dir: Path, *, copied: bool = False) -> bool:
    """The folder is a run of ft's: finished (run.json) or not (.ft-run.json). `copied` accepts a
    marker written for the folder this one was copied or moved from (see marker_of)."""
    return run_dir.is_dir() and (marker_of(run_dir, copied=copied) is not None or finished_record_of(run_dir))


def unknown_entries(run_dir: Path) -> list[str]:
    """Top-level entries of a run folder that ft does not write."""
    return [child.name for child in sorted(run_dir.iterdir()) if not _written_by_ft(child)]


def _written_by_ft(child: Path) -> bool:
    if child.name == "merged":
        return (child / "ft_merge.json").is_file()
    if child.name.startswith("checkpoint-"):
        return re.fullmatch(r"checkpoint-\d+", child.name) is not None
    return any(fnmatch.fnmatchcase(child.name, pattern) for pattern in RUN_FILES)


def run_inputs(cfg: FtConfig, config_path: Path | None) -> dict[Path, str]:
    """Local files and folders this run reads: a run folder holding one must not be deleted."""
    inputs: dict[Path, str] = {}
    if config_path is not None:
        inputs[config_path] = "the config file"
    for index, dataset in enumerate(cfg.datasets):
        inputs[Path(dataset.path)] = f"datasets[{index}].path"
    inputs[Path(cfg.base_model)] = "base_model"
    if cfg.tokenizer_config:
        inputs[Path(cfg.tokenizer_config)] = "tokenizer_config"
    # A DPO run continuing an SFT run's adapter, or scoring against another model, reads them.
    for key in ("lora_model_dir", "ref_model"):
        value = getattr(cfg, key)
        if value:
            inputs[Path(value)] = key
    if cfg.dataset_prepared_path:
        inputs[Path(cfg.dataset_prepared_path)] = "dataset_prepared_path"
    return {path.expanduser().resolve(): what for path, what in inputs.items() if path.expanduser().exists()}


def live_owner(run_dir: Path) -> int | None:
    """The process id of another ft train working in `run_dir` right now, on this host (a marker
    copied from a live run's folder names that run, not this folder)."""
    data = marker_of(run_dir) or {}
    pid = data.get("pid")
    if not isinstance(pid, int) or data.get("host") != host_name() or pid == os.getpid():
        return None
    return pid if os.name == "posix" and pid_alive(pid) else None


def refuse_live_run(run_dir: Path) -> None:
    pid = live_owner(run_dir)
    if pid is not None:
        raise FtError(
            f"output_dir: a run is in progress in {run_dir} (pid {pid})",
            hint=f"wait for it to end or stop it (kill {pid}); if pid {pid} is not an ft train, "
            f'delete {run_dir / RUN_MARKER}\'s "pid" line',
        )


def refuse_deleting(run_dir: Path, cfg: FtConfig, config_path: Path | None) -> None:
    """The checks before start-over or --force deletes `run_dir` (now or once the new run stands)."""
    refuse_holding_cwd(run_dir)
    refuse_live_run(run_dir)
    resolved = run_dir.resolve()
    for path, what in run_inputs(cfg, config_path).items():
        if path == resolved or resolved in path.parents or path in resolved.parents:
            raise FtError(
                f"output_dir: {run_dir} holds {what} ({path}): ft will not move or delete it",
                hint="set another output_dir, or move the input out of the run folder",
            )
    unknown = unknown_entries(run_dir)
    if unknown:
        raise FtError(
            f"output_dir: {run_dir} holds files ft did not write: {', '.join(unknown)}; "
            "ft will not delete them",
            hint="move them out of the run folder (or set another output_dir), then run the same command again",
        )


# ---------------------------------------------------------------------------------------------
# Claiming the folder


def resume_checkpoint(cfg: TrainingSettings, run_dir: Path) -> Path:
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


def auto_resumes(cfg: TrainingSettings, run_dir: Path, resume: bool, force: bool) -> bool:
    """axolotl's auto_resume_from_checkpoints: --resume when output_dir is an ft run with a complete
    checkpoint (and neither --resume, --force nor resume_from_checkpoint decides already)."""
    if resume or force or not cfg.auto_resume_from_checkpoints or cfg.resume_from_checkpoint:
        return False
    return ft_created(run_dir) and newest_checkpoint(run_dir) is not None


def resumes_in_place(cfg: TrainingSettings, run_dir: Path, resume: bool) -> bool:
    """--resume, or a resume_from_checkpoint inside run_dir: the run continues in its own folder."""
    if cfg.resume_from_checkpoint:
        checkpoint = Path(cfg.resume_from_checkpoint).expanduser().resolve()
        return run_dir.resolve() in checkpoint.parents
    return resume


def claim_run_dir(
    cfg: FtConfig,
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    main: bool = True,
    config_path: Path | None = None,
    allow_changes: bool = False,
) -> RunDirClaim:
    """Check the output folder and make it ready; raises OutputExistsError or FtError."""
    claim = RunDirClaim(run_dir)
    _claim_into(
        claim,
        cfg,
        resume=resume,
        force=force,
        main=main,
        config_path=config_path,
        note=claim.notes.append,
        allow_changes=allow_changes,
    )
    return claim


def _claim_into(
    claim: RunDirClaim,
    cfg: FtConfig,
    *,
    resume: bool,
    force: bool,
    main: bool,
    config_path: Path | None,
    note: Note,
    allow_changes: bool = False,
) -> None:
    """Fills `claim` as it goes, so that a signal half-way leaves a record of what was moved;
    `note` is called as each action happens."""
    run_dir = claim.run_dir
    if not main:
        if resume or cfg.resume_from_checkpoint:
            claim.resume_from = resume_checkpoint(cfg, run_dir)
        return
    with writing(run_dir, START_WRITE_HINT):
        _settle_stale_replaced(run_dir, note)
        if resumes_in_place(cfg, run_dir, resume):
            _claim_for_resume(claim, cfg, note, allow_changes)
            return
        if cfg.resume_from_checkpoint:
            claim.resume_from = resume_checkpoint(cfg, run_dir)
        _claim_for_start(claim, cfg, force=force, config_path=config_path, note=note)


def _claim_for_resume(claim: RunDirClaim, cfg: FtConfig, note: Note, allow_changes: bool) -> None:
    """Resume in place: a run folder of ft's, also one copied or moved here (its marker names the
    folder it came from), with the config it was started with unless `allow_changes`."""
    from ft.train.resume import check_config_changes

    run_dir = claim.run_dir
    if not ft_created(run_dir, copied=True):
        raise FtError(
            f"--resume: {run_dir} is not a run folder ft created (no valid run.json or .ft-run.json)",
            hint="resume only from the output_dir of an ft train run",
        )
    refuse_live_run(run_dir)
    claim.resume_from = resume_checkpoint(cfg, run_dir)
    changes = check_config_changes(run_dir, cfg, allow_changes)
    history = run_history(run_dir)
    moved_from = history.get("run_dir")
    if isinstance(moved_from, str) and moved_from != str(run_dir.resolve()):
        note(f"{run_dir}: a run folder copied or moved from {moved_from}")
    _tidy_for_resume(claim, claim.resume_from, note)
    claim.started_at = str(history.get("started_at") or claim.started_at)
    claim.data_content = history.get("data_content")
    entry: dict[str, Any] = {
        "at": utc_now(),
        "from_checkpoint": claim.resume_from.name,
        "step": checkpoint_step(claim.resume_from),
    }
    if changes:
        entry["changes"] = changes
        note(f"--allow-changes: resuming with {len(changes)} changed key(s): {', '.join(changes)}")
    claim.resumes = [*history.get("resumes", []), entry]
    # The marker (this process's) before run.json goes: the folder stays ft's.
    _start(run_dir, claim)
    if (run_dir / RUN_JSON).exists():
        (run_dir / RUN_JSON).unlink()
        note(f"{run_dir}: the finished run is unfinished again until this one ends ({RUN_JSON} removed)")


def run_history(run_dir: Path) -> dict[str, Any]:
    """What a resume carries over: the first start, earlier resumes, the data's digest and the
    folder the run was started in, from run.json (finished) or .ft-run.json (unfinished)."""
    record = read_json(run_dir / RUN_JSON) if finished_record_of(run_dir) else None
    data = record or marker_of(run_dir, copied=True) or {}
    resumes = data.get("resumes")
    return {
        "started_at": data.get("started_at"),
        "resumes": resumes if isinstance(resumes, list) else [],
        "data_content": data.get("data_content"),
        "run_dir": data.get("run_dir"),
    }


def record_data_content(claim: RunDirClaim, digest: str) -> None:
    """Keep the digest of the data in the marker, so a resume of an unfinished run can compare,
    with the resumes as they stand (a data change allowed on this one is in its entry)."""
    claim.data_content = digest
    marker = read_json(claim.run_dir / RUN_MARKER)
    if marker is not None:
        write_json_atomic(
            claim.run_dir / RUN_MARKER, {**marker, "data_content": digest, "resumes": claim.resumes}
        )


def _claim_for_start(
    claim: RunDirClaim, cfg: FtConfig, *, force: bool, config_path: Path | None, note: Note
) -> None:
    run_dir = claim.run_dir
    if is_empty(run_dir):
        _start(run_dir, claim)
        return
    ours = ft_created(run_dir)
    if ours and not has_work_to_keep(run_dir):
        refuse_deleting(run_dir, cfg, config_path)
        note(f"{run_dir} held an unfinished run with no checkpoint: starting it over")
        shutil.rmtree(run_dir)
        _start(run_dir, claim)
        return
    if not force:
        refuse_live_run(run_dir)
        if ours:
            hint = "continue it with --resume, replace it with --force, or set another output_dir"
        elif ft_created(run_dir, copied=True):
            hint = "it is a run folder copied or moved here: continue it with --resume, or set another output_dir"
        else:
            hint = "set another output_dir (ft did not create this folder, so --force will not replace it)"
        raise OutputExistsError(f"output_dir: {run_dir} already exists and is not empty", hint=hint)
    if not ours:
        kind = "a file" if not run_dir.is_dir() else "a folder"
        raise FtError(
            f"{run_dir} is {kind} ft did not create (no valid {RUN_JSON} or {RUN_MARKER}): "
            "ft will not delete it",
            hint="choose another output_dir, or move it away yourself if it can go",
        )
    refuse_deleting(run_dir, cfg, config_path)
    with signals_held():
        claim.replaced = set_aside(run_dir, REPLACED_TAG)
        _start(run_dir, claim)
    note(f"--force: the previous run is set aside in {claim.replaced} until this one ends")


def _settle_stale_replaced(run_dir: Path, note: Note) -> None:
    """Set-aside folders of a `--force` run that was killed (kill -9, OOM killer, preemption): the
    old run goes back unless the killed run left something to keep."""
    for holder in stale_siblings(run_dir, REPLACED_TAG):
        old = holder / run_dir.name
        if not old.exists():  # killed before the rename: an empty holder
            shutil.rmtree(holder, ignore_errors=True)
        elif run_dir.is_dir() and has_work_to_keep(run_dir):
            shutil.rmtree(holder)
            note(f"removed {holder}: a run replaced by an earlier ft train --force (which left a checkpoint)")
        elif not run_dir.exists() or (ft_created(run_dir) and not unknown_entries(run_dir)):
            with signals_held():
                restore(holder, run_dir)
            note(
                f"the previous run is back in {run_dir}: the ft train --force that replaced it "
                "was killed before its first checkpoint"
            )
        else:
            raise FtError(
                f"output_dir: {run_dir} is not the run an earlier ft train --force left, and the run "
                f"it replaced is still in {holder}",
                hint=f"move {run_dir} or {holder / run_dir.name} where you want them, then run again",
            )


def _tidy_for_resume(claim: RunDirClaim, checkpoint: Path, note: Note) -> None:
    """Incomplete checkpoints go; metrics logged after the checkpoint go (trained again)."""
    for partial in incomplete_checkpoints(claim.run_dir):
        shutil.rmtree(partial, ignore_errors=True)
        note(f"removed {partial.name}: incomplete (its save was cut short)")
    step = checkpoint_step(checkpoint)
    dropped = trim_metrics(claim.run_dir / METRICS_JSONL, step)
    if dropped:
        note(f"{METRICS_JSONL}: {dropped} rows after step {step} left out (trained again)")


def _start(run_dir: Path, claim: RunDirClaim | None = None) -> None:
    """`.ft-run.json`: ft's from the first moment; for this folder (run_dir), this process (pid,
    host), and the run's history so far (first start, resumes)."""
    from ft import __version__

    marker: dict[str, Any] = {
        "ft_version": __version__,
        "started_at": claim.started_at if claim is not None else utc_now(),
        "run_dir": str(run_dir.resolve()),
        "pid": os.getpid(),
        "host": host_name(),
    }
    if claim is not None:
        marker["resumes"] = claim.resumes
        if claim.data_content:
            marker["data_content"] = claim.data_content
    write_json_atomic(run_dir / RUN_MARKER, marker)


def settle_replaced(claim: RunDirClaim, succeeded: bool) -> list[str]:
    """After the run: delete the set-aside old run once the new one has a checkpoint (or finished);
    otherwise put it back. Returns notes for the user. SIGINT/SIGTERM sent meanwhile are dropped
    (ft is on its way out already), with a note."""
    holder = claim.replaced
    if holder is None:
        return []
    with signals_held(drop=True) as dropped:
        if succeeded or newest_checkpoint(claim.run_dir) is not None:
            shutil.rmtree(holder, ignore_errors=True)
            notes = (
                []
                if succeeded
                else [
                    f"--force: the previous run in {claim.run_dir} is deleted (the new one has a checkpoint)"
                ]
            )
        else:
            restore(holder, claim.run_dir)
            notes = [
                "--force: the new run stopped before its first checkpoint; "
                f"the previous run is back in {claim.run_dir}"
            ]
        claim.replaced = None
    if dropped:
        notes.append(f"{', '.join(dropped)} while settling --force ignored: ft finished what it was doing")
    return notes


@contextmanager
def claimed_run_dir(
    cfg: FtConfig,
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    main: bool,
    note: Note,
    config_path: Path | None = None,
    allow_changes: bool = False,
) -> Iterator[RunDirClaim]:
    """claim_run_dir, then settle a --force replacement however the run ends."""
    claim = RunDirClaim(run_dir)

    def record(line: str) -> None:
        claim.notes.append(line)
        note(line)

    try:
        _claim_into(
            claim,
            cfg,
            resume=resume,
            force=force,
            main=main,
            config_path=config_path,
            note=record,
            allow_changes=allow_changes,
        )
        yield claim
    except BaseException:
        _settle_on_the_way_out(claim, note)
        raise
    for line in settle_replaced(claim, succeeded=True):
        note(line)


def _settle_on_the_way_out(claim: RunDirClaim, note: Note) -> None:
    holder = claim.replaced
    try:
        lines = settle_replaced(claim, succeeded=False)
    except Exception as err:
        note(f"--force: could not put the previous run back ({err}): it is in {holder}")
        return
    for line in lines:
        note(line)
