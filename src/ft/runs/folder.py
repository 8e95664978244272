"""The run folder: file names, run.json, atomic writes, checkpoints, the loss plot.

A run folder is finished when `run.json` exists: it is written last, through a temporary file and
a rename, so an interrupted run never looks finished. Until then `.ft-run.json`, written when the
run starts, marks the folder as ft's (ft.runs.outdir). A checkpoint is complete when its
`trainer_state.json` reads: transformers writes it after the weights, optimizer, scheduler and RNG
states (Trainer._save_checkpoint), so a checkpoint cut short by kill -9 or a full disk lacks it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ft.base.errors import FtError
from ft.base.perms import file_mode
from ft.config.hub import Need, prepare_hub_access
from ft.config.schema import FtConfig

RUN_JSON = "run.json"
CONFIG_YML = "config.yml"
METRICS_JSONL = "metrics.jsonl"
LOSS_PNG = "loss.png"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CHECKPOINT_PREFIX = "checkpoint-"
RUN_MARKER = ".ft-run.json"
"""Written when a run starts, removed when run.json is written: an unfinished run is ft's too."""
TRAINER_STATE = "trainer_state.json"
FINAL_TMP = ".ft-final.tmp"
"""Where the final model files are written before being moved to the top level."""
EVAL_JSON = "eval.json"
"""Written by `ft eval` into the run folder; read by the model card, which shows its
`forgetting.summary` (the one-line verdict)."""
MERGE_JSON = "ft_merge.json"
"""Written by `ft merge` into a merged folder (it marks the folder as ft's); read by inference for an
optional `terminator`."""

RUN_KEYS = (
    "ft_version",
    "base_model",
    "base_model_path",
    "revision",
    "adapter",
    "quantization",
    "dtype",
    "prompt_format",
    "terminator",
    "added_tokens",
    "library_versions",
    "data_fingerprint",
    "global_step",
    "final_train_loss",
    "final_eval_loss",
    "started_at",
    "finished_at",
)
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes")


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path
    data: dict[str, Any]
    config: FtConfig

    @property
    def adapter(self) -> str | None:
        return self.data.get("adapter")

    @property
    def base_model_path(self) -> str:
        return str(self.data["base_model_path"])

    @property
    def global_step(self) -> int:
        return int(self.data.get("global_step") or 0)


def read_run(run_dir: Path) -> RunInfo:
    """run.json and config.yml of a finished run; FtError if the folder is not one."""
    run_dir = Path(run_dir)
    run_json = run_dir / RUN_JSON
    if not run_json.is_file():
        hint = (
            "it has checkpoints but no run.json: the run did not finish; "
            "continue it with ft train CONFIG --resume"
            if list_checkpoints(run_dir)
            else "give the output_dir of a finished ft train run"
        )
        raise FtError(f"{run_dir} is not a finished ft run folder (no {RUN_JSON})", hint=hint)
    try:
        data = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise FtError(f"{run_json}: unreadable ({err})") from err
    missing = [key for key in RUN_KEYS if key not in data]
    if missing:
        raise FtError(f"{run_json}: missing keys {missing}")
    from ft.config.load import load_config

    return RunInfo(run_dir, data, load_config(run_dir / CONFIG_YML))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_run_folder(path: Path) -> bool:
    """A finished run folder: run.json and config.yml."""
    return (path / RUN_JSON).is_file() and (path / CONFIG_YML).is_file()


def run_hub_access(path: Path, needs: tuple[Need, ...] = ("weights",)) -> list[str]:
    """ft.config.hub.prepare_hub_access for the base model of a run folder (run.json's
    base_model_path, a Hub id or a local folder) and its data when `needs` says: called by the
    commands that load a run before the Hugging Face libraries are imported. Nothing for another
    folder (a merged model is local)."""
    path = Path(path).expanduser()
    if not is_run_folder(path):
        return []
    run = read_run(path)
    return prepare_hub_access(run.config.model_copy(update={"base_model": run.base_model_path}), needs)


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0600 would carry over to the published file
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """checkpoint-N folders, oldest first (by N)."""
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def checkpoint_complete(checkpoint: Path) -> bool:
    """trainer_state.json is written last and must parse: a cut-short checkpoint fails this."""
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoint_step(checkpoint: Path) -> int:
    """The global step a complete checkpoint was saved at."""
    return int(json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (incomplete ones are never resumed from)."""
    complete = [path for path in list_checkpoints(run_dir) if checkpoint_complete(path)]
    return complete[-1] if complete else None


def incomplete_checkpoints(run_dir: Path) -> list[Path]:
    return [path for path in list_checkpoints(run_dir) if not checkpoint_complete(path)]


def has_work_to_keep(run_dir: Path) -> bool:
    """A finished run or a checkpoint to resume from: what starting over would lose."""
    return (run_dir / RUN_JSON).is_file() or newest_checkpoint(run_dir) is not None


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl; a line cut short by a kill is left out."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def trim_metrics(path: Path, last_step: int) -> int:
    """Leave out the rows logged after `last_step` (a resumed run trains those steps again);
    returns how many rows went."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = read_metrics(path)
    kept = [json.dumps(row) for row in rows if int(row.get("step") or 0) <= last_step]
    if len(kept) == len(lines):
        return 0
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(rows) - len(kept)  # a line cut short by a kill is not a row


FORGETTING_KEY = "eval_forgetting_kl"
"""Logged at each evaluation with `eval_forgetting: true` (ft.infer.forgetting)."""


def plot_loss(metrics: list[dict[str, Any]], path: Path, title: str = "") -> str | None:
    """loss.png (see loss_figure); returns a note when it is skipped."""
    if not _series(metrics, "loss") and not _series(metrics, "eval_loss"):
        return "no loss logged: loss.png not written"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: loss.png not written (pip install 'ft-finetune[plot]')"
    fig = loss_figure(metrics, title)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return None


def loss_figure(metrics: list[dict[str, Any]], title: str = "") -> Any:
    """Train and eval loss against the step, the learning rate on a second axis, the forgetting KL
    on a third when measured (`eval_forgetting: true`), the run's name as the title; for preference
    runs the reward margin (chosen minus rejected) in a panel below. Points are marked, so a run
    with one logged step still shows its loss (a line needs two points to be seen)."""
    import matplotlib.pyplot as plt

    train, evals, rates = (_series(metrics, key) for key in ("loss", "eval_loss", "learning_rate"))
    margins = [(label, _series(metrics, key)) for label, key in MARGIN_SERIES]
    margins = [(label, points) for label, points in margins if points]
    panels = 2 if margins else 1
    fig, axes = plt.subplots(panels, 1, figsize=(7, 4 * panels), sharex=True, squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train, strict=True), marker="." if len(train) > 1 else "o", label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), marker="o", label="eval loss")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rates:
        lr_axis = ax.twinx()
        lr_axis.plot(
            *zip(*rates, strict=True), color="tab:gray", linestyle="--", marker="x", label="learning rate"
        )
        lr_axis.set_ylabel("learning rate")
        lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        more_handles, more_labels = lr_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    drift = _series(metrics, FORGETTING_KEY)
    if drift:
        # Its own axis (KL in nats/token is on another scale than the loss), moved out to the right
        # when the learning rate holds the first one; dashed with squares: told apart without colour.
        kl_axis = ax.twinx()
        if rates:
            kl_axis.spines["right"].set_position(("axes", 1.15))
        kl_axis.plot(
            *zip(*drift, strict=True), marker="s", linestyle="--", color="tab:red", label="forgetting KL"
        )
        kl_axis.set_ylabel("forgetting: KL(base || tuned), nats/token")
        kl_axis.set_ylim(bottom=0)
        more_handles, more_labels = kl_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper right")
    if title:
        ax.set_title(title)
    if margins:
        low = axes[1][0]
        for label, points in margins:
            low.plot(*zip(*points, strict=True), marker="o" if label.startswith("eval") else ".", label=label)
        low.axhline(0.0, color="grey", linewidth=0.8)
        low.set_ylabel("reward margin (chosen - rejected)")
        low.grid(alpha=0.3)
        low.legend()
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    return fig


MARGIN_SERIES = (("train margin", "rewards/margins"), ("eval margin", "eval_rewards/margins"))
"""The reward margins trl's DPO and ORPO trainers log (beta x log-ratio difference; ORPO: of mean log-probs)."""


def _series(metrics: list[dict[str, Any]], key: str) -> list[tuple[Any, Any]]:
    return [(row["step"], row[key]) for row in metrics if key in row and "step" in row]
