"""Trainer pieces: metrics.jsonl, progress events for the CLI, a clean stop on Ctrl-C/SIGTERM,
checkpoint writes that fail cleanly.

They subclass transformers' TrainerCallback, so this module imports transformers at import time:
import it only from code that trains.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from trl import SFTTrainer

from ft.base.perms import follow_umask
from ft.base.signals import signal_handler
from ft.runs.folder import TRAINER_STATE, newest_checkpoint
from ft.runs.outdir import is_write_failure, write_failed


@dataclass(frozen=True)
class TrainEvent:
    """What the CLI renders. `kind`: start, step, log, eval, interrupt, end, note."""

    kind: str
    step: int = 0
    max_steps: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""


EventSink = Callable[[TrainEvent], None]


class CollatedTokensCallback(TrainerCallback):
    """Replaces trl's `num_tokens` with the real tokens ft's packed-rows collator handed out.

    trl counts `position_ids.size(1)` when a batch has no attention mask, which is right for its
    own one-row padding-free batches but counts one row of ours. The collator's count is this
    rank's, times the number of processes (ranks get batches of similar size); it may run one
    batch ahead of the step being logged (the data loader looks ahead).
    """

    def __init__(self, collator: Any, world_size: int = 1) -> None:
        self.collator = collator
        self.world_size = world_size

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if logs is not None and "num_tokens" in logs:
            logs["num_tokens"] = float(self.collator.real_tokens * self.world_size)


class MetricsFileCallback(TrainerCallback):
    """Appends every log (train and eval) to metrics.jsonl as one JSON object, on the main process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


class Throughput(TrainerCallback):
    """tokens/s, defined once for the bar, the plain lines, metrics.jsonl, the summary and run.json:
    the real (non-padding) tokens of this session's training batches, per second spent inside
    training steps (forward, backward, optimizer step). Evaluations, logging and checkpoint saves
    run between steps and are not counted, so a run that evaluates often is not made to look slow.

    The tokens are trl's `num_tokens` (counted since this process started; ft's packed-rows
    collator replaces it with its own count, see CollatedTokensCallback, which must come first).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tokens = 0.0
        self.step_seconds = 0.0
        self._began: float | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if self.tokens <= 0 or self.step_seconds <= 0:
            return None
        return self.tokens / self.step_seconds

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._began = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._began is not None:
            self.step_seconds += self.clock() - self._began
            self._began = None

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if logs is None or "num_tokens" not in logs:
            return
        self.tokens = float(logs["num_tokens"])
        if self.tokens_per_s is not None:
            logs["tokens_per_s"] = self.tokens_per_s


class ProgressCallback(TrainerCallback):
    """Turns trainer progress into TrainEvents: steps with ETA, logs with Throughput's tokens/s."""

    def __init__(self, on_event: EventSink, throughput: Throughput) -> None:
        self.on_event = on_event
        self.throughput = throughput
        self.started = 0.0
        self.start_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()
        self.start_step = state.global_step
        if state.is_world_process_zero:
            self.on_event(TrainEvent("start", state.global_step, state.max_steps))

    def eta_s(self, state: Any) -> float | None:
        done = state.global_step - self.start_step
        if done <= 0:
            return None
        per_step = (time.monotonic() - self.started) / done
        return per_step * (state.max_steps - state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            values = {"eta_s": self.eta_s(state), "tokens_per_s": self.throughput.tokens_per_s}
            self.on_event(TrainEvent("step", state.global_step, state.max_steps, values))

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        values = {**logs, "tokens_per_s": self.throughput.tokens_per_s, "eta_s": self.eta_s(state)}
        kind = "eval" if any(key.startswith("eval_") for key in logs) else "log"
        self.on_event(TrainEvent(kind, state.global_step, state.max_steps, values))


class StopRequest:
    """Set by a signal handler; read by StopCallback at the next step boundary."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.aborted = False

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def raise_if_aborted(self) -> None:
        """The second signal's KeyboardInterrupt again: the handler raises it wherever the main
        thread is, and library code (a C extension that checks for signals and clears the error)
        can swallow it there; seen in about 1 of 15 runs that were signalled during a save."""
        if self.aborted:
            raise KeyboardInterrupt


class StopCallback(TrainerCallback):
    """On a stop request: save a checkpoint at the end of the current step, then stop training."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request
        self.stopped_at: int | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.request.raise_if_aborted()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.request.raise_if_aborted()
        if _any_rank(self.request.requested):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.request.raise_if_aborted()

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.request.raise_if_aborted()


def _any_rank(flag: bool) -> bool:
    """True when any process asked to stop: all ranks must stop at the same step or DDP hangs."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


@contextmanager
def stop_on_signals(request: StopRequest, on_event: EventSink) -> Iterator[StopRequest]:
    """While inside: the first SIGINT/SIGTERM asks for a checkpoint and a stop; a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: Any) -> None:
        if request.requested:
            request.aborted = True
            raise KeyboardInterrupt
        request.signal_name = signal.Signals(signum).name
        on_event(
            TrainEvent(
                "interrupt",
                message=f"{request.signal_name}: saving a checkpoint after this step "
                "(again to abort without saving)",
            )
        )

    with signal_handler(handle):
        yield request


CHECKPOINT_WRITE_HINT = (
    "free some disk space (or lower save_total_limit), then continue with ft train CONFIG --resume"
)


def checkpoint_write_hint(run_dir: Path) -> str:
    if newest_checkpoint(run_dir) is None:
        return (
            "free some disk space, then run the same command again (no checkpoint was saved: it starts over)"
        )
    return CHECKPOINT_WRITE_HINT


class QuietCheckpoints:
    """For a trl trainer: no Hub model card (README.md) in the run folder at each checkpoint, and
    failed checkpoint writes leave no partial checkpoint folder. Put it before the trainer class."""

    args: Any
    state: Any

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        return None

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"  # type: ignore[attr-defined]
        if self.args.should_save:
            # Saved over an older checkpoint-N (resumed from an earlier checkpoint): without this,
            # the old trainer_state.json would make a half-overwritten folder look complete.
            (folder / TRAINER_STATE).unlink(missing_ok=True)
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
            if self.args.should_save and folder.is_dir():
                follow_umask(folder)
        except Exception as err:
            if not is_checkpoint_write_failure(err):
                raise
            # The folder is this save's own: removing it frees the space and leaves nothing that
            # looks resumable. A save that got as far as trainer_state.json is complete: kept.
            if self.args.should_save and not (folder / TRAINER_STATE).is_file():
                shutil.rmtree(folder, ignore_errors=True)
            raise write_failed(folder, err, checkpoint_write_hint(folder.parent)) from err


class QuietSFTTrainer(QuietCheckpoints, SFTTrainer):
    """SFTTrainer with QuietCheckpoints, that adds its `eval_probes`' metrics (forgetting) to each
    evaluation's log row. Set after construction: `loraplus` (ratio, embedding learning rate) for
    peft's LoRA+ optimizer, `generation_eval` for generation metrics at each evaluation."""

    loraplus: tuple[float, float | None] | None = None
    generation_eval: Any = None

    def __init__(self, *args: Any, eval_probes: Sequence[Any] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_probes = list(eval_probes)

    def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        """LoRA+ (Hayou et al. 2024): the B matrices learn `ratio` times faster than the A matrices,
        with the optimizer the config names (peft's create_loraplus_optimizer)."""
        if self.loraplus is None or self.optimizer is not None:
            return super().create_optimizer(*args, **kwargs)
        from peft.optimizers import create_loraplus_optimizer
        from transformers import Trainer

        model: Any = self.model
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "lr"}
        ratio, embedding = self.loraplus
        self.optimizer = create_loraplus_optimizer(
            model=model,
            optimizer_cls=optimizer_cls,
            lr=self.args.learning_rate,
            loraplus_lr_ratio=ratio,
            loraplus_lr_embedding=embedding if embedding is not None else 1e-6,
            loraplus_weight_decay=self.args.weight_decay,
            **optimizer_kwargs,
        )
        return self.optimizer

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        metrics: dict[str, float] = super().evaluate(*args, **kwargs)
        if self.generation_eval is not None and self.eval_dataset is not None:
            from ft.train.generation_eval import generation_metrics

            extra = generation_metrics(
                self.model,
                self.processing_class,
                self.eval_dataset,
                self.generation_eval,
                metrics.get("eval_loss"),
            )
            if extra:
                self.log(extra)
                metrics.update(extra)
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # The evaluation's row is logged here, before callbacks see it: the probes' metrics join
        # it so that metrics.jsonl, the progress view and TensorBoard get them in the same row.
        if self.eval_probes and "eval_loss" in logs and self.is_world_process_zero():
            for probe in self.eval_probes:
                logs.update(probe.measure(self.model))
        super().log(logs, start_time)


WRITER_ERRORS = (
    "os error 28",
    "os error 27",
    "os error 122",
    "no space left",
    "file too large",
    "quota exceeded",
    "file write failed",
    "unexpected pos",
)
"""How a full disk reads when the writer gives no errno: safetensors (Rust I/O errors) and
torch.save ("file write failed", "unexpected pos ...")."""


def is_checkpoint_write_failure(err: BaseException) -> bool:
    text = str(err).lower()
    return is_write_failure(err) or any(words in text for words in WRITER_ERRORS)
