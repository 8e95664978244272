"""axolotl's training keys honoured for real, each checked by its effect on a tiny model's run:
auto_resume_from_checkpoints, loraplus_lr_ratio, optim_args, neftune_noise_alpha,
peft_layers_to_transform, gradient_checkpointing_kwargs, load_best_model_at_end with
eval/save strategies and metric_for_best_model, do_causal_lm_eval / eval_causal_lm_metrics,
MLflow with a local file: store, W&B offline, liger on a CPU, overrides_of_model_config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from test_train import losses, run_cli, write_config

pytestmark = pytest.mark.integration


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def adapter_weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_auto_resume_from_checkpoints_continues_the_run(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    config = write_config(
        tmp_path, tiny_model_dir, max_steps=2, save_steps=2, auto_resume_from_checkpoints=True
    )
    assert run_cli("train", str(config)) == 0
    first = losses(tmp_path / "run")
    # As --resume: a config that differs from the run's is refused unless --allow-changes.
    assert run_cli("train", str(config), "--set", "max_steps=3") == 2
    captured = capsys.readouterr()
    assert "auto_resume_from_checkpoints: resuming from the newest checkpoint" in captured.out
    assert "max_steps: 2 -> 3" in captured.err and "--allow-changes" in captured.err
    assert losses(tmp_path / "run") == first
    # The same command with more steps: without --resume it continues from checkpoint-2.
    assert run_cli("train", str(config), "--set", "max_steps=3", "--allow-changes") == 0
    out = capsys.readouterr().out
    assert "auto_resume_from_checkpoints: resuming from the newest checkpoint" in out
    assert json.loads((tmp_path / "run" / "run.json").read_text())["global_step"] == 3
    assert losses(tmp_path / "run")[:2] == first and len(losses(tmp_path / "run")) == 3


def test_loraplus_trains_b_ratio_times_faster_and_optim_args_reach_the_optimizer(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """After one step from B = 0, SGD moves each B by lr x its gradient (A's gradient is zero while
    B is): with LoRA+ by 16 x lr. optim_args give SGD its momentum (optimizer.pt says so)."""
    import torch

    common = {"max_steps": 1, "save_steps": 1, "optimizer": "sgd", "weight_decay": 0.0, "learning_rate": 0.01}
    plain = write_config(tmp_path, tiny_model_dir, name="plain", **common, optim_args="momentum=0.5")
    plus = write_config(
        tmp_path, tiny_model_dir, name="plus", **common, optim_args={"momentum": 0.5}, loraplus_lr_ratio=16
    )
    assert run_cli("train", str(plain)) == 0 and run_cli("train", str(plus)) == 0
    b_plain = {k: v for k, v in adapter_weights(tmp_path / "plain").items() if "lora_B" in k}
    b_plus = {k: v for k, v in adapter_weights(tmp_path / "plus").items() if "lora_B" in k}
    for name, weight in b_plain.items():
        assert torch.allclose(b_plus[name], 16 * weight, rtol=1e-4, atol=1e-9), name
    optimizer = torch.load(tmp_path / "plus" / "checkpoint-1" / "optimizer.pt", weights_only=True)
    assert sorted({group["lr"] for group in optimizer["param_groups"] if group["params"]}) == [0.01, 0.16]
    assert {group["momentum"] for group in optimizer["param_groups"]} == {0.5}


def test_neftune_noise_changes_the_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same seeded run (test_train: the same config trains the same), with noisy embeddings."""
    runs = {}
    for name, alpha in (("quiet", None), ("noisy", 5.0)):
        extra = {"neftune_noise_alpha": alpha} if alpha else {}
        assert (
            run_cli("train", str(write_config(tmp_path, tiny_model_dir, name=name, max_steps=2, **extra)))
            == 0
        )
        runs[name] = losses(tmp_path / name)
    assert runs["noisy"][0] != runs["quiet"][0]


def tiny_config(tiny_model_dir: Path, **settings: Any) -> Any:
    from ft.config.schema import FtConfig

    return FtConfig(base_model=str(tiny_model_dir), datasets=[{"path": "x"}], adapter="lora", **settings)


def test_peft_layers_to_transform_adapts_only_those_layers(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from ft.models.adapter import attach_adapter

    cfg = tiny_config(tiny_model_dir, lora_target_modules=["q_proj", "v_proj"], peft_layers_to_transform=[1])
    adapted = attach_adapter(cfg, AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    names = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    assert names and all(".layers.1." in n for n in names)


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_kwargs_reach_the_model_and_train(
    tiny_model_dir: Path, reentrant: bool
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from ft.models.adapter import attach_adapter

    cfg = tiny_config(
        tiny_model_dir,
        lora_target_linear=True,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": reentrant},
    )
    model = attach_adapter(cfg, AutoModelForCausalLM.from_pretrained(tiny_model_dir)).model
    layer = model.base_model.model.model.layers[0]
    assert layer._gradient_checkpointing_func.keywords["use_reentrant"] is reentrant
    model.train()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]  # A's is zero while B is
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_best_model_at_end_and_generation_metrics_at_each_evaluation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Evaluated and saved every step (eval_strategy / save_strategy: steps); with a learning rate
    that overshoots, the last step need not be the best: the run folder's adapter is the best
    one's. Each evaluation also answers the held-out prompts and scores them (do_causal_lm_eval)."""
    import torch

    config = write_config(
        tmp_path,
        tiny_model_dir,
        max_steps=4,
        learning_rate=0.3,
        val_set_size=4,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        do_causal_lm_eval=True,
        eval_causal_lm_metrics=["sacrebleu", "chrf", "ter", "exact_match", "perplexity"],
    )
    assert run_cli("train", str(config)) == 0
    run = tmp_path / "run"
    evals = {row["step"]: row["eval_loss"] for row in metrics(run) if "eval_loss" in row}
    best = min((step for step in evals if step <= 4), key=lambda step: evals[step])
    final = adapter_weights(run)
    kept = adapter_weights(run / f"checkpoint-{best}")
    assert all(torch.equal(final[name], kept[name]) for name in final)
    others = [step for step in (1, 2, 3, 4) if evals[step] != evals[best]]
    assert others and all(
        any(not torch.equal(final[n], t) for n, t in adapter_weights(run / f"checkpoint-{step}").items())
        for step in others
    )
    scored = {row["step"]: row for row in metrics(run) if "eval_sacrebleu" in row}
    assert sorted(scored)[:4] == [1, 2, 3, 4]
    for step, row in scored.items():
        assert 0 <= row["eval_sacrebleu"] <= 100 and 0 <= row["eval_chrf"] <= 100 and row["eval_ter"] >= 0
        assert 0 <= row["eval_exact_match"] <= 1
        assert row["eval_perplexity"] == pytest.approx(2.718281828459045 ** evals[step], rel=1e-6)


def test_mlflow_file_store_and_wandb_offline_hold_the_metrics(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """One run logs to both: MLflow's metrics files in a local file: store, and W&B's offline run
    file (read with wandb's own protobuf records) hold the losses of metrics.jsonl."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith(("WANDB_", "MLFLOW_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    store = tmp_path / "mlruns"
    config = write_config(
        tmp_path,
        tiny_model_dir,
        max_steps=3,
        use_mlflow=True,
        mlflow_tracking_uri=f"file:{store}",
        mlflow_experiment_name="ft-test",
        wandb_project="ft-test",
        wandb_mode="offline",
    )
    try:
        assert run_cli("train", str(config)) == 0
    finally:  # ft sets the trackers' variables for the process: leave none to the next test
        for key in [k for k in os.environ if k.startswith(("WANDB_", "MLFLOW_"))]:
            os.environ.pop(key, None)
    trained = losses(tmp_path / "run")
    loss_files = list(store.glob("*/*/metrics/loss"))
    assert len(loss_files) == 1
    assert [float(line.split()[1]) for line in loss_files[0].read_text().splitlines()] == pytest.approx(
        trained
    )
    assert "name: ft-test" in (loss_files[0].parents[2] / "meta.yaml").read_text()
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    assert wandb_history_losses(runs[0]) == pytest.approx(trained)


def wandb_records(path: Path) -> list[bytes]:
    """The records of a .wandb file: W&B's header (":W&B", magic, version), then LevelDB's log format
    (32 KiB blocks of records, each a 7-byte header: crc32, length, type full/first/middle/last)."""
    import struct

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records: list[bytes] = []
    partial = b""
    position = 7
    while position + 7 <= len(data):
        left_in_block = 32768 - position % 32768
        if left_in_block < 7:
            position += left_in_block  # block padding
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        payload = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:
            records.append(payload)
        elif kind == 2:
            partial = payload
        elif kind == 3:
            partial += payload
        elif kind == 4:
            records.append(partial + payload)
    return records


def wandb_history_losses(path: Path) -> list[float]:
    """The train/loss values of an offline run's history, parsed with wandb's own protobuf records.

    wandb's writer (a process of its own) may still be writing when wandb.finish() returns: the
    file is read once it holds the run's exit record."""
    import time

    from wandb.proto import wandb_internal_pb2

    records: list[Any] = []
    for _ in range(100):
        records = [wandb_internal_pb2.Record.FromString(data) for data in wandb_records(path)]
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            break
        time.sleep(0.2)
    found = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "train/loss" in items:
                found.append(float(json.loads(items["train/loss"])))
    return found


def test_liger_is_trls_use_liger_kernel_on_cuda_and_a_note_on_a_cpu() -> None:
    from ft.models.precision import Precision
    from ft.train.settings import liger_note, sft_config_kwargs

    cfg = tiny_config(Path("x"), lora_target_linear=True, use_liger_kernel=True)
    cpu = Precision("float32", bf16=False, fp16=False, use_cpu=True)
    gpu = Precision("bfloat16", bf16=True, fp16=False, use_cpu=False)
    assert (
        sft_config_kwargs(cfg, cpu, Path("/tmp/r"), train_rows=8, has_eval=False)["use_liger_kernel"] is False
    )
    assert (
        sft_config_kwargs(cfg, gpu, Path("/tmp/r"), train_rows=8, has_eval=False)["use_liger_kernel"] is True
    )
    assert liger_note(cfg) == (
        "use_liger_kernel (axolotl's liger_* keys): no CUDA device, so trained without Liger's kernels"
    )


def test_model_config_overrides_reach_the_loaded_model(tiny_model_dir: Path) -> None:
    from ft.models.loading import load_model_from_path
    from ft.models.precision import Precision

    cfg = tiny_config(
        tiny_model_dir, lora_target_linear=True, overrides_of_model_config={"rms_norm_eps": 0.25}
    )
    model = load_model_from_path(cfg, str(tiny_model_dir), None, Precision("float32", False, False, True))
    assert model.config.rms_norm_eps == 0.25
