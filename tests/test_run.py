"""The run folder helpers: atomic writes, checkpoints, run.json checks, the loss plot, accelerate configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ft.base.errors import FtError
from ft.runs.folder import (
    checkpoint_complete,
    incomplete_checkpoints,
    list_checkpoints,
    newest_checkpoint,
    plot_loss,
    read_metrics,
    read_run,
    trim_metrics,
    write_json_atomic,
)

REPO = Path(__file__).resolve().parent.parent


def test_write_json_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def complete_checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_checkpoints_sorted_by_step_not_name(tmp_path: Path) -> None:
    for name in ("checkpoint-10", "checkpoint-9", "checkpoint-100", "checkpoint-x", "other"):
        complete_checkpoint(tmp_path / name, 1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert newest_checkpoint(tmp_path) == tmp_path / "checkpoint-100"
    assert newest_checkpoint(tmp_path / "missing") is None


def test_newest_checkpoint_skips_a_save_that_was_cut_short(tmp_path: Path) -> None:
    """transformers writes trainer_state.json last: without it (kill -9 or a full disk during the
    save), or half written, the checkpoint is never resumed from."""
    complete_checkpoint(tmp_path / "checkpoint-4", 4)
    no_state = tmp_path / "checkpoint-8"
    no_state.mkdir()
    (no_state / "adapter_model.safetensors").write_bytes(b"partial")
    assert newest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    half = complete_checkpoint(tmp_path / "checkpoint-12", 12)
    (half / "trainer_state.json").write_text('{"global_step": 1')
    assert not checkpoint_complete(half) and checkpoint_complete(tmp_path / "checkpoint-4")
    assert newest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert incomplete_checkpoints(tmp_path) == [no_state, half]


def test_read_run_refuses_unfinished_and_broken_folders(tmp_path: Path) -> None:
    with pytest.raises(FtError, match="not a finished ft run folder") as err:
        read_run(tmp_path)
    assert err.value.hint == "give the output_dir of a finished ft train run"
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(FtError, match="not a finished") as err:
        read_run(tmp_path)
    assert err.value.hint is not None and "--resume" in err.value.hint
    (tmp_path / "run.json").write_text('{"ft_version": "0.1.0"}')
    with pytest.raises(FtError, match="missing keys"):
        read_run(tmp_path)


def test_loss_plot_written_from_metrics(tmp_path: Path) -> None:
    metrics = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "eval_loss": 2.5}]
    assert plot_loss(metrics, tmp_path / "loss.png") is None
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss([], tmp_path / "empty.png") == "no loss logged: loss.png not written"


@pytest.mark.parametrize("name", ["ddp", "fsdp-qlora", "deepspeed-zero2", "deepspeed-zero3-qlora"])
def test_accelerate_configs_load(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_machines == 1 and config.mixed_precision in ("no", "bf16")
    assert yaml.safe_load(path.read_text())["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")


def test_metrics_trimmed_to_the_resumed_step_and_a_cut_line_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [
        {"step": 1, "loss": 3.0},
        {"step": 2, "loss": 2.5},
        {"step": 2, "eval_loss": 2.7},
        {"step": 3, "loss": 2.0},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"step": 4, "lo')  # killed mid-line
    assert read_metrics(path) == rows
    assert trim_metrics(path, 2) == 1  # the row of step 3; the cut line goes too, but was no row (L8)
    assert read_metrics(path) == rows[:3] and path.read_text().endswith("}\n")
    assert trim_metrics(path, 2) == 0 and trim_metrics(tmp_path / "missing.jsonl", 2) == 0
