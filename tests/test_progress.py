"""Progress without a terminal (plain lines), the one definition of tokens/s, loss.png, file modes."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from ft.cli.progress import StageProgress
from ft.cli.train import ProgressView, plain_step_line


def file_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200), buffer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stage_progress_off_a_terminal_prints_first_last_and_every_interval() -> None:
    console, buffer = file_console()
    clock = FakeClock()
    with StageProgress(console, interval_s=10.0, clock=clock) as progress:
        for done in range(1, 21):
            clock.now = done * 3.0  # an item every 3 s: a line every 4th item, at most one per 10 s
            progress("generate tuned", done, 20)
    lines = buffer.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == [
        "1/20",
        "5/20",
        "9/20",
        "13/20",
        "17/20",
        "20/20",
    ]
    assert lines[1] == "generate tuned: 5/20 (25%)  elapsed 0:12  eta 0:36"


def test_training_view_off_a_terminal_prints_one_line_per_logged_step() -> None:
    from ft.train.callbacks import TrainEvent

    console, buffer = file_console()
    view = ProgressView(console)
    assert not view.live
    view(TrainEvent("start", 0, 50))
    view(TrainEvent("step", 1, 50, {"eta_s": 99.0}))  # steps between logs: nothing
    view(
        TrainEvent(
            "log", 10, 50, {"loss": 1.23456, "learning_rate": 2e-4, "tokens_per_s": 1450.2, "eta_s": 150}
        )
    )
    view(TrainEvent("eval", 10, 50, {"eval_loss": 1.1}))
    view.stop()
    assert buffer.getvalue().splitlines() == [
        "training: step 0 of 50",
        "step 10/50  loss 1.2346  lr 2.00e-04  tok/s 1,450  eta 2:30",
        "step 10/50: eval loss 1.1000",
    ]
    assert plain_step_line(TrainEvent("log", 1, 2, {})) == "step 1/2  loss -  lr -  tok/s -  eta -"


def test_a_preference_run_off_a_terminal_shows_the_reward_margin_beside_the_loss() -> None:
    from ft.train.callbacks import TrainEvent

    console, buffer = file_console()
    view = ProgressView(console)
    view(TrainEvent("start", 0, 20))
    logged = {"loss": 0.5, "rewards/margins": 0.25, "learning_rate": 3e-5, "tokens_per_s": 80.0, "eta_s": 60}
    view(TrainEvent("log", 5, 20, logged))
    view(TrainEvent("eval", 5, 20, {"eval_loss": 0.6, "eval_rewards/margins": 0.125}))
    view.stop()
    assert buffer.getvalue().splitlines()[1:] == [
        "step 5/20  loss 0.5000  margin 0.250  lr 3.00e-05  tok/s 80  eta 1:00",
        "step 5/20: eval loss 0.6000, reward margin 0.1250",
    ]


def test_tokens_per_s_counts_only_time_inside_training_steps() -> None:
    from ft.train.callbacks import Throughput

    clock = FakeClock()
    throughput = Throughput(clock)
    none = SimpleNamespace()
    for began, ended in ((0.0, 2.0), (10.0, 12.0)):  # 8 s between the steps: an evaluation, a save
        clock.now = began
        throughput.on_step_begin(none, none, none)
        clock.now = ended
        throughput.on_step_end(none, none, none)
    logs = {"loss": 1.0, "num_tokens": 800.0}
    throughput.on_log(none, none, none, logs=logs)
    assert throughput.tokens_per_s == 200.0 and logs["tokens_per_s"] == 200.0
    assert Throughput().tokens_per_s is None


def test_loss_figure_marks_a_single_point_titles_the_run_and_plots_the_learning_rate() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from ft.runs.folder import loss_figure

    figure = loss_figure([{"step": 1, "loss": 2.5, "learning_rate": 1e-4}], "my-run")
    ax, lr_axis = figure.axes
    assert ax.get_title() == "my-run"
    [line] = ax.get_lines()
    assert line.get_marker() not in (None, "", "None")  # one point: a line alone would not show
    assert lr_axis.get_ylabel() == "learning rate" and len(lr_axis.get_lines()) == 1


def test_loss_figure_of_a_preference_run_has_the_reward_margins_below() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from ft.runs.folder import loss_figure

    rows = [
        {"step": 1, "loss": 0.69, "rewards/margins": 0.0, "learning_rate": 3e-5},
        {"step": 2, "loss": 0.5, "rewards/margins": 0.4, "learning_rate": 3e-5},
        {"step": 2, "eval_loss": 0.55, "eval_rewards/margins": 0.3},
    ]
    figure = loss_figure(rows, "dpo-run")
    ax, margins, lr_axis = figure.axes
    assert ax.get_title() == "dpo-run" and lr_axis.get_ylabel() == "learning rate"
    assert margins.get_ylabel() == "reward margin (chosen - rejected)"
    train, evals, _zero = margins.get_lines()
    assert list(train.get_ydata()) == [0.0, 0.4] and list(evals.get_ydata()) == [0.3]
    assert margins.get_xlabel() == "step"


def test_loss_figure_puts_the_forgetting_kl_on_its_own_axis_beside_the_learning_rate() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from ft.runs.folder import FORGETTING_KEY, loss_figure

    metrics = [
        {"step": 1, "loss": 2.5, "learning_rate": 1e-4},
        {"step": 2, "eval_loss": 2.4, FORGETTING_KEY: 0.0},
        {"step": 4, "eval_loss": 2.2, FORGETTING_KEY: 0.3},
    ]
    ax, lr_axis, kl_axis = loss_figure(metrics).axes
    assert lr_axis.get_ylabel() == "learning rate"
    assert kl_axis.get_ylabel() == "forgetting: KL(base || tuned), nats/token"
    [kl_line] = kl_axis.get_lines()
    assert list(kl_line.get_xdata()) == [2, 4] and list(kl_line.get_ydata()) == [0.0, 0.3]
    assert kl_line.get_marker() == "s" and kl_line.get_linestyle() == "--"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["train loss", "eval loss", "learning rate", "forgetting KL"]


def test_published_files_and_folders_follow_the_umask(tmp_path: Path) -> None:
    from ft.base.perms import follow_umask
    from ft.runs.folder import write_text_atomic
    from ft.runs.outdir import new_sibling

    previous = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "run.json", "{}")
        folder = new_sibling(tmp_path / "merged", "merge", ".tmp")
        (folder / "model.safetensors").touch(mode=0o600)
        follow_umask(folder)
    finally:
        os.umask(previous)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "run.json") == 0o640
    assert mode(folder) == 0o750 and mode(folder / "model.safetensors") == 0o640
