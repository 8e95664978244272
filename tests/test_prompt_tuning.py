"""`adapter: prompt_tuning`: the config rules, the soft prompt's start from text, and every command
on a tiny run: train (run folder, resume), format, generate, eval, the refusals of merge and export."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.schema import FtConfig, rule_problems
from ft.models.adapter import refuse_folding, soft_prompt_init_ids

SOFT_PROMPT = {
    "adapter": "prompt_tuning",
    "lora_r": None,
    "lora_alpha": None,
    "lora_target_linear": None,
    "num_virtual_tokens": 5,
    "learning_rate": 0.1,
}


def test_rules_name_keys_of_the_other_adapter_and_packing() -> None:
    base = {"base_model": "m", "datasets": [{"path": "d.jsonl"}]}
    assert rule_problems({**base, "adapter": "prompt_tuning", "lora_r": 16, "sample_packing": True}) == [
        "lora_r: is a LoRA setting: adapter: prompt_tuning trains only a soft prompt; remove it",
        "sample_packing: adapter: prompt_tuning prepends its soft prompt once per sequence, so packed "
        "examples would share one prompt (and peft drops the position ids that keep them apart): "
        "set sample_packing: false",
    ]
    assert rule_problems({**base, "adapter": "prompt_tuning", "prompt_tuning_init": "text"}) == [
        "prompt_tuning_init_text: prompt_tuning_init: text needs the text whose tokens start the prompt"
    ]
    lora = {**base, "adapter": "lora", "lora_target_linear": True, "num_virtual_tokens": 8}
    assert rule_problems(lora) == [
        "num_virtual_tokens: is a prompt_tuning setting: set adapter: prompt_tuning, or remove it"
    ]
    # A soft prompt needs no LoRA targets, and a config built in code carries every default.
    assert rule_problems({**base, "adapter": "prompt_tuning"}) == []
    assert FtConfig(**base, adapter="prompt_tuning").num_virtual_tokens == 20


def test_text_start_repeats_or_cuts_the_text_tokens(tiny_tokenizer) -> None:
    ids = tiny_tokenizer("Answer the question", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.bos_token_id not in ids
    assert soft_prompt_init_ids(tiny_tokenizer, "Answer the question", 2) == ids[:2]
    assert soft_prompt_init_ids(tiny_tokenizer, "Answer the question", 2 * len(ids) + 1) == [
        *ids,
        *ids,
        ids[0],
    ]


def test_merge_and_export_refuse_a_soft_prompt_in_one_line() -> None:
    with pytest.raises(FtError) as caught:
        refuse_folding("prompt_tuning", Path("runs/pt"), "ft merge")
    assert caught.value.message == (
        "ft merge: runs/pt holds a soft prompt (prompt_tuning): input vectors put before every prompt, "
        "not a change to any weight, so there is nothing to fold into the model"
    )
    assert "adapter: lora" in (caught.value.hint or "")
    refuse_folding("lora", Path("runs/lora"), "ft merge")  # LoRA folds: no error


# ---------------------------------------------------------------------------------------------
# On the tiny model


@pytest.fixture(scope="module")
def soft_prompt_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from test_train import run_cli, write_config

    folder = tmp_path_factory.mktemp("prompt-tuning")
    config = write_config(
        folder,
        tiny_model_dir,
        **SOFT_PROMPT,
        prompt_tuning_init="text",
        prompt_tuning_init_text="Answer the question",
        val_set_size=2,
        eval_steps=4,
        max_steps=12,
        save_steps=1000,
    )
    assert run_cli("train", str(config)) == 0
    return folder / "run"


@pytest.mark.integration
def test_text_start_copies_the_token_embeddings(tiny_model_dir: Path, tiny_tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from ft.models.adapter import attach_adapter

    cfg = FtConfig(
        base_model=str(tiny_model_dir),
        datasets=[{"path": "d.jsonl"}],
        adapter="prompt_tuning",
        num_virtual_tokens=7,
        prompt_tuning_init="text",
        prompt_tuning_init_text="Answer the question",
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    embeddings = model.get_input_embeddings().weight.detach().clone()
    adapted = attach_adapter(cfg, model, tiny_tokenizer)
    assert adapted.trainable_params == 7 * 64 and adapted.target_modules == []
    soft = adapted.model.prompt_encoder["default"].embedding.weight
    ids = soft_prompt_init_ids(tiny_tokenizer, "Answer the question", 7)
    assert torch.equal(soft.detach(), embeddings[ids])
    assert [name for name, p in adapted.model.named_parameters() if p.requires_grad] == [
        "prompt_encoder.default.embedding.weight"
    ]


@pytest.mark.integration
def test_training_leaves_only_a_soft_prompt_and_lowers_the_loss(soft_prompt_run: Path) -> None:
    from safetensors.torch import load_file

    from test_train import losses

    saved = load_file(soft_prompt_run / "adapter_model.safetensors")
    assert {name: tuple(t.shape) for name, t in saved.items()} == {"prompt_embeddings": (5, 64)}
    adapter = json.loads((soft_prompt_run / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "PROMPT_TUNING" and adapter["num_virtual_tokens"] == 5
    assert json.loads((soft_prompt_run / "run.json").read_text())["adapter"] == "prompt_tuning"
    assert not list(soft_prompt_run.glob("model*.safetensors"))  # the base is not copied
    train = losses(soft_prompt_run)
    assert sum(train[-3:]) / 3 < sum(train[:3]) / 3


@pytest.mark.integration
def test_generate_eval_merge_and_export(soft_prompt_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_infer import invoke
    from test_train import run_cli

    result = invoke("generate", str(soft_prompt_run), "--prompt", "What is 2 + 2?", "--max-new-tokens", "4")
    assert "base + prompt_tuning adapter" in result.output
    invoke("eval", str(soft_prompt_run), "--compare-base", "--max-new-tokens", "4")
    report = json.loads((soft_prompt_run / "eval.json").read_text())
    run = json.loads((soft_prompt_run / "run.json").read_text())
    # The virtual positions are left out: the loss is the trainer's, and the soft prompt helps.
    assert report["loss"] == pytest.approx(run["final_eval_loss"], abs=1e-4)
    assert report["tuned"]["loss"] < report["base"]["loss"]

    card = (soft_prompt_run / "README.md").read_text()  # the model card, written again by ft eval
    assert "A soft prompt (prompt tuning; the base model's weights unchanged) fine-tuned from" in card
    capsys.readouterr()

    assert run_cli("merge", str(soft_prompt_run)) == 2
    assert not (soft_prompt_run / "merged").exists()
    out = soft_prompt_run.parent / "pt.gguf"
    for extra in ([], ["--adapter-only"]):
        assert run_cli("export", str(soft_prompt_run), "--gguf", "f16", "--out", str(out), *extra) == 2
        err = capsys.readouterr().err
        assert f"ft export: {soft_prompt_run} holds a soft prompt (prompt_tuning)" in err
        assert "nothing to fold into the model" in err and "train with adapter: lora" in err
        assert "Traceback" not in err and not out.exists()


@pytest.mark.integration
def test_format_shows_where_the_soft_prompt_goes(tmp_path: Path, tiny_model_dir: Path) -> None:
    from test_format_cli import run, write_config

    config = write_config(tmp_path, tiny_model_dir, adapter="prompt_tuning", num_virtual_tokens=5)
    shown = run("format", str(config), "-n", "1")
    assert shown.exit_code == 0, shown.output
    assert "⟨soft prompt: 5 virtual tokens, trained⟩<s>Instruct: What is 2 + 2?" in shown.stdout
    assert "+ 5 virtual tokens before them" in shown.stdout
    assert "sequence_len + 5 = 69 positions" in shown.stdout
    record = json.loads(run("format", str(config), "--json", "-n", "1").stdout.splitlines()[0])
    assert record["virtual_tokens"] == 5 and record["text"].startswith("<s>Instruct:")


@pytest.mark.integration
def test_resume_continues_the_soft_prompt_exactly(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Stopped by SIGINT after its first step, then --resume: the same soft prompt as a run that
    was never stopped (optimizer, scheduler and data position restored)."""
    import torch
    from safetensors.torch import load_file

    from test_interrupt import finish, start_train, wait_for
    from test_train import run_cli, write_config

    settings = {**SOFT_PROMPT, "max_steps": 6, "save_steps": 1000}
    straight = write_config(tmp_path, tiny_model_dir, name="straight", **settings)
    stopped = write_config(tmp_path, tiny_model_dir, name="stopped", **settings)
    assert run_cli("train", str(straight)) == 0
    run, log = tmp_path / "stopped", tmp_path / "stopped.log"
    proc = start_train(stopped, log)
    wait_for(lambda: (run / "metrics.jsonl").is_file(), proc, log)
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc, log)
    assert code == 130 and list(run.glob("checkpoint-*")), output
    assert run_cli("train", str(stopped), "--resume") == 0
    first = load_file(tmp_path / "straight" / "adapter_model.safetensors")["prompt_embeddings"]
    resumed = load_file(run / "adapter_model.safetensors")["prompt_embeddings"]
    assert torch.equal(first, resumed)
