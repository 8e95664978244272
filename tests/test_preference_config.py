"""Preference tuning's config: the keys and their rules, axolotl's names and pair types, the
DPOConfig / ORPOConfig builder (pure), and what `ft plan` counts for pairs and the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ft.config.load import read_config
from ft.config.schema import FtConfig, rule_problems
from ft.models.precision import Precision
from ft.plan.estimate import build_plan
from ft.train.preference import build_preference_config, preference_config_kwargs

CPU = Precision("float32", bf16=False, fp16=False, use_cpu=True)
BASE = {"base_model": "org/model", "datasets": [{"path": "pairs.jsonl", "type": "alpaca"}]}


@pytest.mark.parametrize(
    ("keys", "problems"),
    [
        ({"rl": "dpo"}, []),
        ({"rl": "ipo", "rl_beta": 0.5}, []),
        ({"rl": "orpo", "orpo_alpha": 0.2}, []),
        ({"rl": ""}, []),  # axolotl's empty rl: supervised fine-tuning
        (
            {"rl": "kto"},
            ["rl: KTO (unpaired good/bad labels) is not supported by ft: use rl: dpo, ipo or orpo"],
        ),
        (
            {"rl": "simpo"},
            [
                "rl: SimPO (trl 1.16 has it only in its experimental CPO trainer, not as a DPO loss) is not "
                "supported by ft: use rl: dpo, ipo or orpo"
            ],
        ),
        ({"rl": "dpp"}, ["rl: unknown rl method 'dpp' (did you mean dpo?)"]),
        (
            {"rl_beta": 0.2, "max_prompt_len": 64},
            [
                "rl_beta: a preference-tuning key, but rl is not set: set rl: dpo, ipo or orpo, or remove it",
                "max_prompt_len: a preference-tuning key, but rl is not set: set rl: dpo, ipo or orpo, or remove it",
            ],
        ),
        (
            {"rl": "orpo", "rl_beta": 0.1, "ref_model": "org/other", "precompute_ref_log_probs": True},
            [
                "rl_beta: rl: orpo weighs its odds-ratio term with orpo_alpha, not rl_beta",
                "precompute_ref_log_probs: ORPO has no reference model: remove it",
                "ref_model: ORPO has no reference model: remove it",
            ],
        ),
        ({"rl": "dpo", "orpo_alpha": 1.0}, ["orpo_alpha: ORPO's weight: with rl: dpo, set rl_beta instead"]),
        (
            {"rl": "ipo", "dpo_label_smoothing": 0.1},
            ["dpo_label_smoothing: label smoothing is for rl: dpo (robust DPO), not ipo"],
        ),
        (
            {"rl": "dpo", "max_prompt_len": 512, "sequence_len": 512},
            [
                "max_prompt_len: max_prompt_len 512 leaves no room for the answers in sequence_len 512: "
                "make it smaller than sequence_len"
            ],
        ),
        (
            {"rl": "dpo", "sample_packing": True, "train_on_inputs": True, "group_by_length": True},
            [
                "sample_packing: preference pairs are not packed (each batch is padded): set it false",
                "train_on_inputs: preference tuning scores the answers only: remove train_on_inputs",
                "group_by_length: preference pairs are batched in random order: remove group_by_length",
            ],
        ),
        (
            {"rl": "orpo", "pad_to_sequence_len": True},
            ["pad_to_sequence_len: rl: orpo pads each batch to its longest pair: remove pad_to_sequence_len"],
        ),
        (
            {"rl": "dpo", "datasets": [{"path": "d.jsonl", "type": "completion"}]},
            [
                "datasets[0].type: completion text has no prompt to prefer one answer to: use a prompt format "
                "(alpaca, chat_template, ...) for pair datasets"
            ],
        ),
        (
            {
                "rl": "dpo",
                "adapter": "prompt_tuning",
                "eval_forgetting": True,
                "val_set_size": 0.1,
                "datasets": [{"path": "d.jsonl", "type": "alpaca", "weight": 2}],
            },
            [
                "adapter: rl: dpo trains a LoRA adapter or the full model, not a soft prompt: set adapter: lora",
                "eval_forgetting: not measured during preference tuning: measure after training with "
                "ft eval RUN --forgetting",
                "datasets[0].weight: preference pairs are not weighted: remove weight (or repeat the rows)",
            ],
        ),
        (
            {
                "rl": "orpo",
                "loraplus_lr_ratio": 16,
                "curriculum_sampling": True,
                "do_causal_lm_eval": True,
                "excess_length_strategy": "split",
                "datasets": [{"path": "d.jsonl", "type": "chat_template", "drop_system_message": True}],
            },
            [
                "loraplus_lr_ratio: LoRA+ is applied to supervised fine-tuning only, not rl: orpo: remove it",
                "curriculum_sampling: preference pairs are batched in random order: remove curriculum_sampling",
                "do_causal_lm_eval: generation metrics are measured for supervised fine-tuning only: remove it "
                "(ft eval RUN scores the pairs' margins after training)",
                "excess_length_strategy: a preference pair is not split into pieces: use drop (the default), "
                "truncate or error",
                "datasets[0].drop_system_message: not applied to preference pairs: remove it (and the system "
                "turns from the data)",
            ],
        ),
        (
            {"datasets": [{"path": "d.jsonl", "field_rejected": "worse"}]},
            ["datasets[0].field_rejected: field_rejected names a pair column: set rl: dpo, ipo or orpo"],
        ),
    ],
)
def test_preference_rules(keys: dict, problems: list[str]) -> None:
    assert sorted(rule_problems({**BASE, **keys})) == sorted(problems)


def write(tmp_path: Path, data: dict) -> Path:
    (tmp_path / "pairs.jsonl").write_text("{}\n")
    path = tmp_path / "ft.yml"
    path.write_text(yaml.safe_dump({**BASE, "datasets": [{"path": str(tmp_path / "pairs.jsonl")}], **data}))
    return path


def test_axolotl_dpo_keys(tmp_path: Path) -> None:
    cfg, notes = read_config(
        write(tmp_path, {"rl": "dpo", "dpo_beta": 0.3, "precompute_ref_log_probs": True})
    )
    assert (cfg.rl, cfg.rl_beta, cfg.precompute_ref_log_probs) == ("dpo", 0.3, True)
    assert notes == ["dpo_beta: 0.3 (axolotl) read as rl_beta: 0.3"]
    with pytest.raises(Exception) as err:
        read_config(write(tmp_path, {"rl": "dpo", "dpo_use_weighting": True}))
    assert err.value.problems == [  # type: ignore[attr-defined]
        "dpo_use_weighting: axolotl's dpo_use_weighting is not supported by ft: an option of axolotl's DPO "
        "that ft does not have (ft's preference keys are rl (dpo, ipo, orpo), rl_beta, orpo_alpha, "
        "dpo_label_smoothing, max_prompt_len, precompute_ref_log_probs, ref_model)",
    ]
    # A key of a method ft lacks names the method, alone (the config's other problems follow from it).
    with pytest.raises(Exception) as err:
        read_config(write(tmp_path, {"rl": "dpo", "dpo_use_weighting": True, "kto_desirable_weight": 2.0}))
    assert err.value.problems == [  # type: ignore[attr-defined]
        "kto_desirable_weight: 2.0: KTO (unpaired good/bad labels) is not available in ft (ft does not have "
        "it; train this config with axolotl)",
    ]


def test_axolotl_pair_types_need_rl(tmp_path: Path) -> None:
    path = write(tmp_path, {})
    data = yaml.safe_load(path.read_text())
    data["datasets"][0]["type"] = "chatml.argilla"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(Exception) as err:
        read_config(path)
    assert err.value.problems == [  # type: ignore[attr-defined]
        "datasets[0].type: axolotl's chatml.argilla is a preference-pair type: set rl: dpo, ipo or orpo"
    ]
    data["rl"] = "orpo"
    path.write_text(yaml.safe_dump(data))
    cfg, notes = read_config(path)
    pairs = cfg.datasets[0]
    assert (pairs.type, pairs.field_prompt, pairs.field_chosen, pairs.field_rejected) == (
        "chat_template",
        "instruction",
        "chosen_response",
        "rejected_response",
    )
    assert notes[0].startswith("datasets[0].type: chatml.argilla (axolotl) read as type: chat_template")


# ---------------------------------------------------------------------------------------------
# The trainer settings


def kwargs_for(**keys: object) -> dict:
    cfg = FtConfig(**{**BASE, "sequence_len": 512, **keys})
    return preference_config_kwargs(cfg, CPU, Path("/tmp/run"), train_rows=100, has_eval=True)


def test_dpo_settings() -> None:
    kw = kwargs_for(rl="dpo", rl_beta=0.2, micro_batch_size=4, precompute_ref_log_probs=True)
    assert (kw["beta"], kw["loss_type"], kw["label_smoothing"]) == (0.2, ["sigmoid"], 0.0)
    assert kw["precompute_ref_log_probs"] is True and kw["precompute_ref_batch_size"] == 4
    assert kw["max_length"] == 512 and kw["remove_unused_columns"] is False
    assert kw["use_cpu"] is True and kw["bf16"] is False and kw["activation_checkpointing"] is False
    assert not {"dataset_kwargs", "packing", "padding_free", "train_sampling_strategy"} & set(kw)
    assert kwargs_for(rl="dpo", dpo_label_smoothing=0.1)["loss_type"] == ["robust"]
    assert kwargs_for(rl="ipo")["loss_type"] == ["ipo"] and kwargs_for(rl="ipo")["beta"] == 0.1
    assert kwargs_for(rl="dpo", pad_to_sequence_len=True)["pad_to_multiple_of"] == 512


def test_orpo_settings() -> None:
    kw = kwargs_for(rl="orpo", orpo_alpha=0.25)
    assert kw["beta"] == 0.25 and "loss_type" not in kw and "precompute_ref_log_probs" not in kw


def test_built_configs_are_trls() -> None:
    from trl import DPOConfig
    from trl.experimental.orpo import ORPOConfig

    for method, kind in (("dpo", DPOConfig), ("orpo", ORPOConfig)):
        cfg = FtConfig(**{**BASE, "rl": method})
        built = build_preference_config(cfg, CPU, Path("/tmp/run"), train_rows=10, has_eval=False)
        assert type(built) is kind and built.beta == 0.1 and built.max_length == 2048
        assert built.activation_checkpointing is False and built.use_cpu


# ---------------------------------------------------------------------------------------------
# ft plan


REPO = Path(__file__).resolve().parent.parent
LLAMA2 = REPO / "tests" / "data" / "plan" / "llama-2-7b"


def llama2_plan(*overrides: str):
    sets = [
        f"base_model={LLAMA2}",
        "datasets[0].type=alpaca",
        "group_by_length=false",
        "max_steps=100",
        *overrides,
    ]
    cfg, _ = read_config(REPO / "configs" / "llama2-qlora.yml", sets, check_files=False)
    return build_plan(cfg)


def bytes_of(plan, *keys: str) -> int:
    return sum(line.bytes for line in plan.memory if line.key in keys)


def test_plan_counts_two_sequences_per_pair_and_the_reference_pass() -> None:
    sft, dpo, orpo = llama2_plan(), llama2_plan("rl=dpo"), llama2_plan("rl=orpo")
    assert bytes_of(dpo, "activations") == 2 * bytes_of(sft, "activations")
    assert bytes_of(dpo, "logits") == 2 * bytes_of(sft, "logits")
    assert dpo.tokens.total == 2 * sft.tokens.total == 2 * 100 * 4 * 512
    matmul = 6_607_077_376
    assert sft.flops == pytest.approx(6 * matmul * sft.tokens.total)  # 4 + 2 (checkpointing)
    assert dpo.flops == pytest.approx(8 * matmul * dpo.tokens.total)  # + 2: the reference's forward
    assert orpo.flops == pytest.approx(6 * matmul * orpo.tokens.total)  # ORPO has no reference
    # The adapter switched off is the reference: no second model.
    assert bytes_of(dpo, "reference") == 0 and bytes_of(orpo, "reference") == 0


def test_plan_counts_a_reference_only_where_one_is_loaded(tmp_path: Path) -> None:
    weights = ("weights_quantized", "weights_kept")
    with_ref = llama2_plan("rl=dpo", "ref_model=org/other")
    assert bytes_of(with_ref, "reference") == bytes_of(with_ref, *weights)
    adapter = tmp_path / "sft"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 64, "target_modules": ["q_proj", "v_proj"]}')
    continued = llama2_plan("rl=dpo", f"lora_model_dir={adapter}")
    assert bytes_of(continued, "reference") == 4 * continued.adapter["parameters"]
    full = ("load_in_4bit=false", "adapter=", "fp16=false", "bf16=true", "optimizer=adamw_torch", "rl=dpo")
    assert bytes_of(llama2_plan(*full), "reference") == bytes_of(llama2_plan(*full), "weights")
    assert bytes_of(llama2_plan(*full, "precompute_ref_log_probs=true"), "reference") == 0
