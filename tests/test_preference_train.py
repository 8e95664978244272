"""`ft train` with rl: dpo / ipo / orpo on the tiny model, and what reads its run folder (eval,
merge, generate). The reference: the base with the adapter off, a continued SFT adapter as it
was, ref_model, precomputed; Ctrl-C and --resume."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from test_interrupt import signal_self_when, train_steps
from test_train import run_cli

pytestmark = pytest.mark.integration

QUESTIONS = [
    ("What is the capital of France?", "Paris.", "London."),
    ("What is 2 + 2?", "4", "5"),
    ("Translate to French: good morning", "bonjour", "good night"),
    ("Give three tips for staying healthy.", "Eat well, sleep, exercise.", "No."),
]


def write_pairs(path: Path) -> Path:
    rows = [{"prompt": q, "chosen": good, "rejected": bad} for q, good, bad in QUESTIONS * 4]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def dpo_config(tmp_path: Path, model_dir: Path, name: str = "dpo", **keys: object) -> Path:
    config = {
        "base_model": str(model_dir),
        "rl": "dpo",
        "datasets": [{"path": str(write_pairs(tmp_path / "pairs.jsonl")), "type": "phi2"}],
        "val_set_size": 4,
        "sequence_len": 128,
        "adapter": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_target_linear": True,
        "micro_batch_size": 4,
        "eval_batch_size": 4,
        "max_steps": 6,
        "learning_rate": 0.01,
        "lr_scheduler": "constant",
        "logging_steps": 1,
        "save_steps": 3,
        "output_dir": str(tmp_path / name),
        **keys,
    }
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_rows(run: Path) -> list[dict]:
    return [row for row in metrics(run) if "loss" in row]


def test_dpo_run_folder_rewards_eval_merge_and_generate(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config = dpo_config(tmp_path, tiny_model_dir)
    assert run_cli("train", str(config)) == 0
    out = " ".join(capsys.readouterr().out.split())
    run = tmp_path / "dpo"
    assert {p.name for p in run.iterdir()} >= {
        "adapter_model.safetensors",
        "run.json",
        "loss.png",
        "config.yml",
    }
    assert not (run / "ref").exists()  # no reference adapter saved: the base was the reference

    rows = train_rows(run)
    assert [row["step"] for row in rows] == list(range(1, 7))
    # Step 1: the adapter starts as a no-op (B = 0), so the policy is the reference: zero rewards.
    assert rows[0]["rewards/margins"] == 0.0 and rows[0]["loss"] == pytest.approx(0.6931, abs=1e-4)
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["rewards/margins"] > 0.1
    evals = [row for row in metrics(run) if "eval_rewards/margins" in row]
    assert evals and evals[-1]["eval_rewards/margins"] > 0

    record = json.loads((run / "run.json").read_text())["rl"]
    assert {k: record[k] for k in ("method", "reference", "beta", "loss_type")} == {
        "method": "dpo",
        "reference": "the base model (adapter switched off)",
        "beta": 0.1,
        "loss_type": "sigmoid",
    }
    assert record["final_train"]["margins"] == pytest.approx(rows[-1]["rewards/margins"])
    assert record["final_eval"]["margins"] == pytest.approx(evals[-1]["eval_rewards/margins"])
    assert f"reward margin {record['final_train']['margins']:.4f}" in out
    # Off a terminal: one plain line per logged step, the margin beside the loss.
    last = rows[-1]
    assert f"step 6/6 loss {last['loss']:.4f} margin {last['rewards/margins']:.3f} lr " in out
    # tokens/s as for SFT: both sequences' real tokens (trl's num_tokens) per second inside the steps.
    whole = json.loads((run / "run.json").read_text())
    assert whole["throughput"]["tokens"] == last["num_tokens"] > 0
    assert whole["tokens_per_s"] == pytest.approx(last["tokens_per_s"]) and whole["tokens_per_s"] > 0

    # The adapter changed; the base did not.
    adapter = load_file(run / "adapter_model.safetensors")
    assert any(name.endswith("lora_B.weight") and tensor.abs().max() > 0 for name, tensor in adapter.items())
    base_after = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    original = load_file(tiny_model_dir / "model.safetensors")
    assert all(torch.equal(base_after[name], original[name]) for name in original)

    # ft eval's DPO implicit reward (beta x margin gained over the base) is trl's eval reward margin.
    assert run_cli("eval", str(run), "--compare-base", "--max-new-tokens", "4") == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["rewards"]["margin"] == pytest.approx(evals[-1]["eval_rewards/margins"], abs=1e-4)
    assert report["rewards"]["accuracy"] == pytest.approx(evals[-1]["eval_rewards/accuracies"])
    assert report["tuned"]["pairs"]["margin"] > report["base"]["pairs"]["margin"]
    assert report["base_label"] == "reference (the base model)"

    # The card states the method, the reference, the last rewards and ft eval's pair margins.
    card = (run / "README.md").read_text()
    assert "- dpo\n" in card and "- sft\n" not in card  # the tags
    assert "- method: `dpo` (beta 0.1, loss_type sigmoid, label_smoothing 0.0" in card
    assert "- reference: the base model (adapter switched off)" in card
    assert f"- final reward margin (eval): {record['final_eval']['margins']:.4g}, accuracy" in card
    assert f"margin log p(chosen) - log p(rejected) {report['tuned']['pairs']['margin']:.4g}" in card
    assert f"DPO implicit reward (beta 0.1): mean {report['rewards']['margin']:.4g}" in card

    merged = tmp_path / "merged"
    assert run_cli("merge", str(run), "--out", str(merged)) == 0  # verifies merged == base + adapter logits
    assert json.loads((merged / "ft_merge.json").read_text())["max_abs_logit_diff"] < 1e-4
    assert "- method: `dpo`" in (merged / "README.md").read_text()
    assert run_cli("generate", str(merged), "--prompt", "What is 2 + 2?", "--max-new-tokens", "3") == 0
    # ft export of a merged DPO model, as for SFT: written, read back and its logits verified.
    gguf = tmp_path / "dpo-f32.gguf"
    assert run_cli("export", str(merged), "--gguf", "f32", "--out", str(gguf)) == 0
    assert (
        json.loads((tmp_path / "dpo-f32.ft_export.json").read_text())["verification"]["top1_agreement"] == 1.0
    )


@pytest.mark.parametrize("continued", [False, True])
def test_a_new_adapter_is_compared_with_the_base_a_continued_one_with_its_frozen_copy(
    continued: bool, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """trl copies any adapter it is given into a frozen "ref" adapter; a new adapter needs no copy
    (B = 0: the base with the adapter off is the same reference, without the copy's LoRA work in
    every reference forward). A continued adapter (lora_model_dir) keeps the copy."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ft.config.load import load_config
    from ft.data.pipeline import PreparedData
    from ft.models.precision import resolve_precision
    from ft.train.preference import build_preference_config, build_preference_trainer

    cfg = load_config(dpo_config(tmp_path, tiny_model_dir, val_set_size=0))
    if continued:
        cfg = cfg.model_copy(update={"lora_model_dir": str(tmp_path / "sft")})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    pairs = Dataset.from_dict(
        {"prompt_ids": [[0, 5, 6, 7]] * 4, "chosen_ids": [[8, 9, 1]] * 4, "rejected_ids": [[10, 1]] * 4}
    )
    args = build_preference_config(
        cfg, resolve_precision(cfg), tmp_path / "run", train_rows=4, has_eval=False
    )
    data = PreparedData(pairs, None, None, "")  # type: ignore[arg-type]
    trainer = build_preference_trainer(cfg, model, args, data, tokenizer, [])
    assert list(trainer.model.peft_config) == (["default", "ref"] if continued else ["default"])
    if not continued:
        # The reference forward (adapter off) gives the policy's own log-probabilities: zero rewards.
        trainer.compute_loss(trainer.model, next(iter(trainer.get_train_dataloader())))
        assert trainer._metrics["train"]["rewards/margins"] == [0.0]
        assert trainer._metrics["train"]["rewards/chosen"] == [0.0]


@pytest.mark.parametrize("method", ["ipo", "orpo"])
def test_ipo_and_orpo_train_and_log_rewards(method: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = dpo_config(tmp_path, tiny_model_dir, rl=method, max_steps=4, val_set_size=0, save_steps=4)
    assert run_cli("train", str(config)) == 0
    rows = train_rows(tmp_path / "dpo")
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    assert all(row["num_tokens"] > 0 for row in rows)
    record = json.loads((tmp_path / "dpo" / "run.json").read_text())["rl"]
    assert record["method"] == method
    card = (tmp_path / "dpo" / "README.md").read_text()
    if method == "orpo":
        assert record["reference"] == "none (ORPO)" and "nll_loss" in rows[0]
        assert "- method: `orpo` (orpo_alpha 0.1)\n- reference: none (ORPO)" in card
    else:
        assert record["loss_type"] == "ipo"
        assert "- method: `ipo` (beta 0.1, loss_type ipo," in card
    assert f"- {method}\n" in card  # the tag


def test_dpo_after_sft_scores_against_the_sft_adapter(
    tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ft.infer.evaluate import EvalSettings
    from ft.infer.pair_eval import run_pair_eval
    from test_train import write_config

    sft_config = write_config(tmp_path, tiny_model_dir, name="sft", max_steps=4, save_steps=4)
    assert run_cli("train", str(sft_config)) == 0
    config = dpo_config(
        tmp_path, tiny_model_dir, lora_model_dir=str(tmp_path / "sft"), max_steps=6, save_steps=6
    )
    assert run_cli("train", str(config)) == 0
    rows = train_rows(tmp_path / "dpo")
    # The SFT adapter is where DPO starts and what it compares against: zero rewards at step 1 (with
    # the base as the reference they would be the SFT adapter's own margin, far from zero).
    assert rows[0]["rewards/chosen"] == 0.0 and rows[0]["rewards/rejected"] == 0.0
    assert rows[-1]["rewards/margins"] > 0
    run = tmp_path / "dpo"
    assert not (run / "ref").exists()  # trl's frozen copy of the SFT adapter stays out of the run folder
    assert "lora_model_dir" in json.loads((run / "run.json").read_text())["rl"]["reference"]
    assert run_cli("eval", str(run), "--compare-base", "--max-new-tokens", "2") == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["base_label"] == f"reference (the adapter of {tmp_path / 'sft'})"
    assert report["rewards"]["margin"] > 0
    # --forgetting on a preference run: drift from the base model (SFT and DPO both), as for SFT.
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    settings = EvalSettings(max_new_tokens=2, forgetting=True, forgetting_limit=3)
    forgetting = run_pair_eval(run, settings).forgetting
    assert forgetting is not None and forgetting.kl > 0
    assert json.loads((run / "eval.json").read_text())["forgetting"]["kl"] == forgetting.kl

    # Written into the SFT run's own folder, --force would delete the adapter it continues: refused.
    in_place = dpo_config(tmp_path, tiny_model_dir, name="in-place", lora_model_dir=str(tmp_path / "sft"))
    data = yaml.safe_load(in_place.read_text())
    in_place.write_text(yaml.safe_dump({**data, "output_dir": str(tmp_path / "sft")}))
    assert run_cli("train", str(in_place), "--force") == 2
    assert "holds lora_model_dir" in " ".join(capsys.readouterr().err.split())
    assert (tmp_path / "sft" / "adapter_model.safetensors").is_file()


def test_ref_model_and_precomputed_reference(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tiny import save_tiny_model

    other = save_tiny_model(tmp_path / "other", seed=1)
    config = dpo_config(tmp_path, tiny_model_dir, name="ref", ref_model=str(other), max_steps=2, save_steps=2)
    assert run_cli("train", str(config)) == 0
    rows = train_rows(tmp_path / "ref")
    assert rows[0]["rewards/margins"] != 0.0  # another model is the reference: the rewards start apart
    assert json.loads((tmp_path / "ref" / "run.json").read_text())["rl"]["reference"] == f"ref_model: {other}"

    config = dpo_config(
        tmp_path, tiny_model_dir, name="pre", precompute_ref_log_probs=True, max_steps=2, save_steps=2
    )
    assert run_cli("train", str(config)) == 0
    assert train_rows(tmp_path / "pre")[0]["rewards/margins"] == 0.0


def test_ctrl_c_saves_a_checkpoint_and_resume_reaches_the_planned_step(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    planned = 12
    config = dpo_config(tmp_path, tiny_model_dir, max_steps=planned, save_steps=1000, val_set_size=0)
    run = tmp_path / "dpo"
    with signal_self_when(lambda: (run / "metrics.jsonl").is_file(), signal.SIGINT) as sent:
        code = run_cli("train", str(config))
    assert sent.is_set() and code == 130
    assert "checkpoint saved in" in " ".join(capsys.readouterr().err.split())
    assert not (run / "run.json").exists()
    assert run_cli("train", str(config), "--resume") == 0
    assert json.loads((run / "run.json").read_text())["global_step"] == planned
    assert train_steps(run) == list(range(1, planned + 1))
