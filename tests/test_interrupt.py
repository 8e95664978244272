"""`ft train` stopped at different points, then continued: nothing lost, nothing half-written used.

Kill points, each reached by waiting for a file the run writes (no sleeps, no test hooks in ft):
during data preparation (SIGTERM), during a step (SIGINT), during a checkpoint save (SIGTERM, and
SIGKILL, which no handler can soften), and a full disk while saving a checkpoint (RLIMIT_FSIZE:
writes past the limit fail with EFBIG, as they would with ENOSPC on a full disk).
Signals during steps and saves hit a real `python -m ft train` process (a save is caught half-way
by freezing the process with SIGSTOP the moment its adapter file appears). To keep the suite fast,
the data-preparation point runs `ft train` in this process, signalled by a watcher thread (the
window there lasts seconds), and the full disk too. Every continuation runs in this process.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ft.runs.folder import checkpoint_complete
from test_train import run_cli, write_config

pytestmark = pytest.mark.integration


def start_train(config: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ft", "train", str(config), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def signal_self_when(condition: Callable[[], bool], signum: int) -> Iterator[threading.Event]:
    """Send `signum` to this process once `condition` holds, while an ft handler is installed
    (never with the default handler, which would end the test run)."""
    sent, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            if condition() and callable(signal.getsignal(signum)):
                os.kill(os.getpid(), signum)
                sent.set()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield sent
    finally:
        done.set()
        watcher.join()


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes fail with EFBIG (SIGXFSZ ignored, as it would end the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"ft train ended first (exit {proc.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out:\n{log.read_text()}")
        time.sleep(0.002)


def finish(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    proc.wait(timeout=180)
    return proc.returncode, " ".join(log.read_text().split())


def pause_mid_save(proc: subprocess.Popen, run: Path, log: Path, steps: range) -> Path:
    """Freeze the run (SIGSTOP) while it writes a checkpoint: its adapter is on disk, its
    trainer_state.json (written last) not yet. Tries the next checkpoint when a save was too quick."""
    for step in steps:
        folder = run / f"checkpoint-{step}"
        wait_for(lambda f=folder: (f / "adapter_model.safetensors").is_file(), proc, log)
        proc.send_signal(signal.SIGSTOP)
        if not checkpoint_complete(folder):
            return folder
        proc.send_signal(signal.SIGCONT)
    proc.kill()
    raise AssertionError(f"no checkpoint save caught half-way in {list(steps)}")


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def train_steps(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows if "loss" in row]


def test_sigterm_during_data_preparation_then_a_plain_rerun(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Imported first, so that the signal lands in ft's work rather than half-way through an import
    # of this test process (a CLI process ends anyway; this one goes on to the next tests).
    import datasets  # noqa: F401

    import ft.data.chat_templates
    import ft.data.pipeline
    import ft.data.tokens  # noqa: F401

    config = write_config(tmp_path, tiny_model_dir, max_steps=4, save_steps=2)
    run = tmp_path / "run"
    # .ft-run.json is written once the signal handling is in place, then config.yml, then the
    # tokenizer and data load.
    with signal_self_when(lambda: (run / "config.yml").is_file(), signal.SIGTERM) as sent:
        code = run_cli("train", str(config))
    assert sent.is_set() and code == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped by SIGTERM before training started" in err
    # What was running is on disk from the start: the marker and the resolved config.
    assert sorted(p.name for p in run.iterdir()) == [".ft-run.json", "config.yml"]

    assert run_cli("train", str(config), "--resume") == 2  # nothing to resume: says so
    assert "no complete checkpoint" in capsys.readouterr().err
    assert run_cli("train", str(config)) == 0  # no --force needed: the folder held nothing to keep
    assert run_json(run)["global_step"] == 4
    assert not (run / ".ft-run.json").exists()


def test_sigint_during_a_step_then_resume_reaches_the_planned_step(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    planned = 20
    config = write_config(tmp_path, tiny_model_dir, max_steps=planned, save_steps=1000, learning_rate=0.001)
    run, log = tmp_path / "run", tmp_path / "ft.log"
    proc = start_train(config, log, "--set", "logging_steps=1")
    wait_for(lambda: (run / "metrics.jsonl").is_file(), proc, log)  # step 1 is logged: training
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc, log)
    assert code == 130, output
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and checkpoint_complete(checkpoints[0]), output
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert 0 < stopped_at < planned
    assert f"checkpoint saved in {checkpoints[0]}" in output
    # The hint repeats the command as it was started: the config and every --set.
    assert f"continue with: ft train {config} --resume --set logging_steps=1" in output
    # The log is a file, not a terminal: one plain line per logged step, none of a bar.
    assert "step 1/20 loss " in output
    assert not (run / "run.json").exists()  # an interrupted run does not look finished

    assert run_cli("train", str(config), "--resume") == 0
    assert run_json(run)["global_step"] == planned
    assert train_steps(run) == list(range(1, planned + 1))


def test_sigterm_during_a_checkpoint_save_finishes_it_then_stops(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    planned = 8
    config = write_config(tmp_path, tiny_model_dir, max_steps=planned, save_steps=2)
    run, log = tmp_path / "run", tmp_path / "ft.log"
    proc = start_train(config, log)
    saving = pause_mid_save(proc, run, log, range(2, planned - 2, 2))
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)  # the handler runs in the middle of the save
    code, output = finish(proc, log)
    assert code == 130, output
    assert checkpoint_complete(saving)  # the save in progress was finished ...
    stopped = (
        run / f"checkpoint-{int(saving.name.split('-')[1]) + 1}"
    )  # ... and the step under way got its own
    assert checkpoint_complete(stopped) and f"checkpoint saved in {stopped}" in output

    assert run_cli("train", str(config), "--resume") == 0
    assert run_json(run)["global_step"] == planned


def test_sigkill_during_a_checkpoint_save_resumes_from_the_last_complete_one(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planned = 10
    config = write_config(tmp_path, tiny_model_dir, max_steps=planned, save_steps=2)
    run, log = tmp_path / "run", tmp_path / "ft.log"
    proc = start_train(config, log)
    wait_for(lambda: checkpoint_complete(run / "checkpoint-2"), proc, log)
    partial = pause_mid_save(proc, run, log, range(4, planned, 2))
    proc.kill()
    proc.wait(timeout=60)
    assert partial.is_dir() and not checkpoint_complete(partial)
    previous = run / f"checkpoint-{int(partial.name.split('-')[1]) - 2}"

    assert run_cli("train", str(config), "--resume") == 0
    output = " ".join(capsys.readouterr().out.split())
    assert f"removed {partial.name}: incomplete" in output
    assert f"resuming from {previous}" in output
    assert f"rows after step {previous.name.split('-')[1]} left out" in output
    assert run_json(run)["global_step"] == planned
    assert train_steps(run) == list(range(1, planned + 1))  # each step logged once


def test_full_disk_while_saving_a_checkpoint(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files may not grow past 100 kB: the adapter (69 kB) fits, the optimizer state (155 kB) not."""
    config = write_config(tmp_path, tiny_model_dir, max_steps=4, save_steps=2)
    run = tmp_path / "run"
    with file_size_limit(100_000):
        code = run_cli("train", str(config))
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert f"cannot write {run / 'checkpoint-2'}" in err and "disk full" in err
    assert "fix: free some disk space, then run the same command again" in err and "Traceback" not in err
    assert not (run / "checkpoint-2").exists()  # no partial checkpoint left to be resumed
    assert not any(checkpoint_complete(p) for p in run.glob("checkpoint-*"))

    assert run_cli("train", str(config)) == 0  # space again: the run starts over, no --force needed
    assert run_json(run)["global_step"] == 4


def test_sigkill_while_writing_the_final_files_then_resume_writes_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    planned = 4
    config = write_config(tmp_path, tiny_model_dir, max_steps=planned, save_steps=2)
    run, log = tmp_path / "run", tmp_path / "ft.log"
    proc = start_train(config, log)
    # After the last step: the adapter goes to .ft-final.tmp, then to the top level, run.json last.
    wait_for(lambda: (run / ".ft-final.tmp").is_dir(), proc, log)
    proc.kill()
    proc.wait(timeout=60)
    assert not (run / "run.json").exists()  # a killed run never looks finished

    assert run_cli("train", str(config), "--resume") == 0
    assert run_json(run)["global_step"] == planned
    assert not (run / ".ft-final.tmp").exists() and not (run / ".ft-run.json").exists()
    assert (run / "adapter_model.safetensors").is_file()


def test_second_signal_aborts_and_names_the_newest_checkpoint(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """L5: SIGINT then SIGTERM land together in the middle of a save (the process is frozen while
    both are sent, so they cannot merge into one): the first asks for a stop, the second aborts.
    The message names the newest complete checkpoint, and --resume continues from it."""
    planned = 12
    config = write_config(tmp_path, tiny_model_dir, max_steps=planned, save_steps=2)
    run, log = tmp_path / "run", tmp_path / "ft.log"
    proc = start_train(config, log)
    wait_for(lambda: checkpoint_complete(run / "checkpoint-2"), proc, log)
    partial = pause_mid_save(proc, run, log, range(4, planned, 2))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    code, output = finish(proc, log)
    newest = run / f"checkpoint-{int(partial.name.split('-')[1]) - 2}"
    assert code == 130, output
    assert f"aborted by a second signal; the newest complete checkpoint is {newest}" in output
    assert "--resume" in output and "Traceback" not in output

    assert run_cli("train", str(config), "--resume") == 0
    assert f"resuming from {newest}" in " ".join(capsys.readouterr().out.split())
    assert run_json(run)["global_step"] == planned


def test_only_write_failures_are_reported_as_a_full_disk() -> None:
    """L1: a checkpoint save's other errors (a collective failing, a bug) keep their own message
    and traceback, and do not delete the checkpoint."""
    import errno

    from ft.train.callbacks import is_checkpoint_write_failure

    assert is_checkpoint_write_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert is_checkpoint_write_failure(
        RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64")
    )
    assert is_checkpoint_write_failure(
        RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    )
    assert is_checkpoint_write_failure(
        Exception("Error while serializing: I/O error: File too large (os error 27)")
    )
    assert not is_checkpoint_write_failure(RuntimeError("NCCL communicator was aborted on rank 1"))
    assert not is_checkpoint_write_failure(ValueError("checkpoint-3 is not a directory"))


def test_a_stop_passes_through_library_code_that_catches_exception() -> None:
    """transformers turns any error while loading a tokenizer into an OSError: a Ctrl-C landing there
    must still stop the command as a stop, not as a tokenizer that cannot be loaded."""
    from ft.base.errors import TrainingInterrupted
    from ft.base.signals import raise_on_signals

    swallowed = []
    with (
        pytest.raises(TrainingInterrupted, match="stopped by SIGTERM"),
        raise_on_signals(lambda name: TrainingInterrupted(f"stopped by {name}")),
    ):
        try:
            signal.raise_signal(signal.SIGTERM)
        except Exception as err:  # what a library wrapping every error does
            swallowed.append(err)
    assert swallowed == []
