"""`ft plan`: exact counts against published figures and peft, weight memory against loaded models,
the CLI, and start-up imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.load import read_config
from ft.config.schema import FtConfig
from ft.plan.architecture import Shape
from ft.plan.estimate import Plan, build_plan
from ft.plan.memory import quantized_weight_bytes

REPO = Path(__file__).resolve().parent.parent
LLAMA2_CONFIG = REPO / "tests" / "data" / "plan" / "llama-2-7b" / "config.json"
"""Llama-2-7b-hf's config.json with the published values (meta-llama/Llama-2-7b-hf on the Hub)."""
LLAMA2_QLORA = REPO / "configs" / "llama2-qlora.yml"
LLAMA2_PARAMS = 6_738_415_616  # Llama-2 model card / paper (Touvron et al. 2023), the 7B checkpoint
LORA_R64_ALL_LINEAR = 159_907_840  # r=64 on q, k, v, o, gate, up, down of all 32 layers


def llama2_plan(*overrides: str) -> Plan:
    local = f"base_model={LLAMA2_CONFIG.parent}"
    cfg, _ = read_config(LLAMA2_QLORA, [local, *overrides], check_files=False)
    return build_plan(cfg)  # its dataset is on the Hub: tokens are estimated, nothing is loaded


def line_bytes(plan: Plan, *keys: str) -> int:
    return sum(line.bytes for line in plan.memory if line.key in keys)


# ---------------------------------------------------------------------------------------------
# Published figures (Llama-2-7B from its config.json alone, on the meta device)


def test_llama2_7b_parameter_count_is_exact() -> None:
    plan = llama2_plan()
    assert plan.parameters["total"] == LLAMA2_PARAMS
    assert plan.parameters["embeddings"] == plan.parameters["head"] == 32000 * 4096
    assert plan.parameters["norms"] == (2 * 32 + 1) * 4096
    assert plan.parameters["attention"] == 32 * 4 * 4096 * 4096
    assert plan.parameters["mlp"] == 32 * 3 * 4096 * 11008
    assert plan.parameters["other"] == 0


def test_lora_counts_on_llama2_7b() -> None:
    shipped = llama2_plan()  # q_proj, v_proj as in the shipped config
    assert shipped.adapter is not None
    assert shipped.trainable_parameters == 32 * 2 * 64 * (4096 + 4096) == 33_554_432
    every = llama2_plan("lora_target_modules=", "lora_target_linear=true")
    assert every.adapter is not None
    assert every.trainable_parameters == LORA_R64_ALL_LINEAR
    assert every.adapter["targets"] == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    assert every.adapter["wrapped_layers"] == 7 * 32


def test_nf4_double_quant_stores_llama2_7b_in_about_3_9_gb() -> None:
    """QLoRA paper: NF4 with double quantization; the head and embeddings stay 16-bit."""
    double = llama2_plan("bnb_4bit_use_double_quant=true")
    stored = line_bytes(double, "weights_quantized", "weights_kept")
    assert 3.85e9 < stored < 3.90e9  # 3.87 GB (decimal), 3.60 GiB
    single = llama2_plan()  # the shipped config: no double quant, 0.5 bit per weight of scales
    assert line_bytes(single, "weights_quantized") - line_bytes(double, "weights_quantized") == pytest.approx(
        6_476_005_376 * (0.5 - 0.127) / 8, rel=0.01
    )


def test_scale_bits_per_weight() -> None:
    layer = [Shape(4096, 4096)]
    data, scales = quantized_weight_bytes(layer, 4, double_quant=False)
    assert data * 2 == layer[0].numel
    assert scales * 8 / layer[0].numel == pytest.approx(0.5, abs=1e-3)
    _, scales = quantized_weight_bytes(layer, 4, double_quant=True)
    assert scales * 8 / layer[0].numel == pytest.approx(0.127, abs=1e-3)
    data, scales = quantized_weight_bytes(layer, 8, double_quant=False)
    assert (data, scales) == (4096 * 4096, 4 * 4096)


def test_memory_follows_the_settings() -> None:
    base = llama2_plan()
    no_ckpt = llama2_plan("gradient_checkpointing=false")
    assert line_bytes(no_ckpt, "activations") > 5 * line_bytes(base, "activations")
    adam8 = llama2_plan("optimizer=adamw_bnb_8bit")
    sgd = llama2_plan("optimizer=sgd")
    assert line_bytes(base, "optimizer") == 8 * base.trainable_parameters  # paged 32-bit: float32 states
    assert line_bytes(adam8, "optimizer") == pytest.approx(2 * base.trainable_parameters, rel=0.02)
    assert line_bytes(sgd, "optimizer") == 0
    bf16 = llama2_plan("load_in_4bit=false", "adapter=lora", "fp16=false", "bf16=true")
    assert line_bytes(bf16, "weights") == 2 * LLAMA2_PARAMS + 2 * 64 * 4  # + rotary buffers (float32)
    full_bf16 = llama2_plan(
        "load_in_4bit=false", "adapter=", "fp16=false", "bf16=true", "optimizer=adamw_torch"
    )
    assert full_bf16.trainable_parameters == LLAMA2_PARAMS
    assert line_bytes(full_bf16, "optimizer") == 4 * LLAMA2_PARAMS  # torch AdamW: 2 bf16 states
    paged_bf16 = llama2_plan(
        "load_in_4bit=false", "adapter=", "fp16=false", "bf16=true", "optimizer=paged_adamw_32bit"
    )
    assert line_bytes(paged_bf16, "optimizer") == 8 * LLAMA2_PARAMS  # bitsandbytes: float32 states always
    assert next(g for g in full_bf16.gpus if g.name == "A100 80GB").fits  # 8 bytes per parameter
    full_fp16 = llama2_plan("load_in_4bit=false", "adapter=")  # fp16 mixed precision: float32 master weights
    assert line_bytes(full_fp16, "weights", "gradients", "optimizer") == 16 * LLAMA2_PARAMS + 2 * 64 * 4
    assert line_bytes(full_fp16, "autocast_copies") == 2 * 6_607_077_376  # fp16 copies of the matmul weights
    assert line_bytes(full_bf16, "autocast_copies") == 0
    assert not any(g.fits for g in full_fp16.gpus)
    assert next(g for g in base.gpus if g.name == "RTX 4090").fits


def test_time_from_tokens() -> None:
    plan = llama2_plan("max_steps=100")
    assert plan.tokens.total == 100 * 4 * 512
    assert plan.tokens.how.startswith("estimated")
    assert plan.flops == pytest.approx(6 * 6_607_077_376 * 100 * 4 * 512)  # 4 + 2 (checkpointing) x N x T
    h100 = next(g for g in plan.gpus if g.name == "H100 SXM")
    assert h100.hours == pytest.approx(plan.flops / (989e12 * 0.4) / 3600)
    assert llama2_plan().tokens.total is None  # a Hub dataset and no max_steps: unknown, said so


def test_unknown_gpu_is_a_clear_error() -> None:
    cfg, _ = read_config(LLAMA2_QLORA, [f"base_model={LLAMA2_CONFIG.parent}"], check_files=False)
    with pytest.raises(FtError, match=r"no single GPU of the table matches .V100."):
        build_plan(cfg, gpu="V100", count_tokens=False)


# ---------------------------------------------------------------------------------------------
# Against peft and loaded models


def tiny_cfg(model_dir: Path, data: Path, **kw: object) -> FtConfig:
    settings = {"base_model": str(model_dir), "datasets": [{"path": str(data), "type": "alpaca"}]}
    return FtConfig.model_validate({**settings, "adapter": "lora", "sequence_len": 512, **kw})


@pytest.fixture
def alpaca_file(tmp_path: Path) -> Path:
    path = tmp_path / "d.jsonl"
    rows = [{"instruction": f"Say {i}", "output": f"{i} is a number."} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.integration
@pytest.mark.parametrize(
    "settings",
    [
        {"lora_target_linear": True},
        {"lora_target_modules": ["q_proj", "v_proj"], "lora_r": 4},
        {
            "lora_target_modules": ["o_proj", "down_proj"],
            "peft_use_dora": True,
            "lora_modules_to_save": ["lm_head"],
        },
        {"adapter": "prompt_tuning", "num_virtual_tokens": 7},
    ],
)
def test_lora_count_equals_peft_trainable_count(
    tiny_model_dir: Path, alpaca_file: Path, settings: dict
) -> None:
    from ft.models.adapter import attach_adapter
    from ft.models.loading import load_base_model
    from ft.models.precision import Precision

    cfg = tiny_cfg(tiny_model_dir, alpaca_file, **settings)
    plan = build_plan(cfg, count_tokens=False)
    model = load_base_model(cfg, None, Precision("float32", bf16=False, fp16=False, use_cpu=True))
    base_total = sum(p.numel() for p in model.parameters())
    adapted = attach_adapter(cfg, model)
    assert plan.trainable_parameters == adapted.trainable_params
    assert plan.parameters["total"] == base_total


def test_tokens_counted_for_a_local_dataset(tiny_model_dir: Path, alpaca_file: Path) -> None:
    plan = build_plan(tiny_cfg(tiny_model_dir, alpaca_file, num_epochs=2, lora_target_linear=True))
    assert plan.tokens.how.startswith("counted: 10 training rows")
    assert plan.tokens.total is not None and plan.tokens.total > 2 * 10 * 5


LOADS = {
    "fp32": {"bf16": False},
    "bf16": {"bf16": True},
    "8bit": {"bf16": True, "load_in_8bit": True},
    "4bit": {"bf16": True, "load_in_4bit": True, "adapter": "qlora", "bnb_4bit_use_double_quant": False},
    "4bit-dq": {"bf16": True, "load_in_4bit": True, "adapter": "qlora", "bnb_4bit_use_double_quant": True},
}


def quant_state_bytes(model: object) -> int:
    """The scales bitsandbytes keeps beside the packed weights, which get_memory_footprint leaves out."""
    total = 0
    for module in model.modules():  # type: ignore[attr-defined]
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            total += state.absmax.numel() * state.absmax.element_size() + state.code.numel() * 4
            if state.nested:
                total += state.state2.absmax.numel() * 4 + 4
        scb = getattr(weight, "SCB", None)
        if scb is not None:
            total += scb.numel() * scb.element_size()
    return total


def check_weight_memory(model_dir: Path, data: Path, loads: list[str]) -> list[str]:
    """Planned weight bytes against the model ft's loader returns: exact (0.1%) against
    get_memory_footprint plus the bitsandbytes scales it leaves out, and within 5% of
    get_memory_footprint alone, except for NF4 without double quantization, whose float32 scales
    (0.5 bit per weight, 6% of SmolLM2's 4-bit weights) get_memory_footprint does not see."""
    from ft.models.loading import load_model_from_path
    from ft.models.precision import resolve_precision

    problems = []
    for name in loads:
        settings = LOADS[name]
        cfg = tiny_cfg(model_dir, data, lora_target_linear=True, **settings)
        plan = build_plan(cfg, count_tokens=False)
        planned = line_bytes(plan, "weights", "weights_quantized", "weights_kept")
        model = load_model_from_path(cfg, str(model_dir), None, resolve_precision(cfg, has_cuda=False))
        footprint = model.get_memory_footprint()
        stored = footprint + quant_state_bytes(model)
        off_footprint = abs(planned / footprint - 1) > 0.05 and name != "4bit"
        if off_footprint or abs(planned / stored - 1) > 0.001:
            problems.append(f"{name}: planned {planned:,}, footprint {footprint:,}, with scales {stored:,}")
        del model
    return problems


@pytest.mark.integration
def test_weight_memory_matches_the_loaded_tiny_model(tiny_model_dir: Path, alpaca_file: Path) -> None:
    assert check_weight_memory(tiny_model_dir, alpaca_file, list(LOADS)) == []


SMOLLM2_135M = {  # HuggingFaceTB/SmolLM2-135M config.json
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-05,
    "rope_theta": 100000,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}


@pytest.mark.integration
def test_weight_memory_matches_a_loaded_smollm2_size_model(tmp_path: Path, alpaca_file: Path) -> None:
    """SmolLM2-135M's architecture with random weights: memory does not depend on the values."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M
    model.save_pretrained(tmp_path / "smollm2")
    del model
    # 4-bit quantization on this CPU takes about 12 s per load: one 4-bit load, ft's default.
    assert check_weight_memory(tmp_path / "smollm2", alpaca_file, ["fp32", "bf16", "8bit", "4bit-dq"]) == []


# ---------------------------------------------------------------------------------------------
# CLI


def fake_hub_cache(root: Path, repo_id: str) -> Path:
    """The Hub cache layout transformers reads offline: models--org--name/snapshots/<hash>/, refs/main."""
    commit = "0" * 40
    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(LLAMA2_CONFIG, repo / "snapshots" / commit / "config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def run_ft(
    args: list[str], hf_home: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    env.pop("HF_HUB_CACHE", None)
    code = "from ft.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_plan_json_from_the_hub_cache(tmp_path: Path) -> None:
    home = fake_hub_cache(tmp_path, "NousResearch/Llama-2-7b-chat-hf")
    out = run_ft(["plan", str(LLAMA2_QLORA), "--json", "--gpu", "T4"], home)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert set(plan) >= {
        "parameters",
        "trainable_parameters",
        "memory",
        "total_bytes",
        "gpus",
        "budget",
        "tokens",
    }
    assert plan["parameters"]["total"] == LLAMA2_PARAMS
    assert "Hugging Face cache" in plan["architecture_source"]
    assert plan["budget"]["name"] == "T4" and plan["budget"]["fits"] is True
    assert plan["precision"]["compute_dtype"] == "float16"


def test_plan_without_a_cached_config_exits_2(tmp_path: Path) -> None:
    out = run_ft(["plan", str(LLAMA2_QLORA)], tmp_path)
    assert out.returncode == 2
    assert "HF_HUB_OFFLINE is set, and the local Hugging Face cache lacks:" in out.stderr
    assert "base_model: NousResearch/Llama-2-7b-chat-hf" in out.stderr
    assert "hf download NousResearch/Llama-2-7b-chat-hf config.json" in out.stderr
    assert "Traceback" not in out.stderr


def test_plan_table_and_memory_budget() -> None:
    from typer.testing import CliRunner

    from ft.cli.app import app

    base = f"base_model={LLAMA2_CONFIG.parent}"
    result = CliRunner().invoke(app, ["plan", str(LLAMA2_QLORA), "--set", base, "--memory", "6GB"])
    assert result.exit_code == 0, result.output  # a report: 0 whether or not it fits
    assert "parameters 6,738,415,616" in result.output
    assert "--memory (6.00 GiB): does not fit" in result.output


def test_memory_sizes() -> None:
    from ft.cli.plan import parse_memory

    assert parse_memory("24GB") == parse_memory("24 GiB") == parse_memory("24") == 24 * 2**30
    assert parse_memory("512MB") == 512 * 2**20
    with pytest.raises(FtError, match="--memory"):
        parse_memory("lots")


def test_plan_start_up_imports_no_heavy_library() -> None:
    code = (
        "import sys; import ft.cli.app, ft.cli.plan, ft.plan.estimate\n"
        "print([m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Activations against what autograd keeps

SMALL_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "tie_word_embeddings": False,
}


def saved_activation_bytes(cfg: FtConfig, tokens: int) -> int:
    """Bytes of the tensors autograd saves for the backward (parameters excluded) in one training
    forward under 16-bit autocast (bf16: the CPU's), the way the Trainer runs it."""
    import torch

    from ft.models.adapter import attach_adapter
    from ft.models.loading import load_base_model
    from ft.models.precision import Precision

    precision = Precision(
        "float16" if cfg.fp16 else "bfloat16", bf16=not cfg.fp16, fp16=cfg.fp16, use_cpu=True
    )
    model = load_base_model(cfg, None, precision)  # fp16: a full fine-tune loads float32 master weights
    model = attach_adapter(cfg, model).model
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, SMALL_LLAMA["vocab_size"], (1, tokens))
    with (
        torch.autocast("cpu", dtype=torch.bfloat16),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        model(input_ids=ids, labels=ids)
    return sum(saved.values())


@pytest.mark.integration
@pytest.mark.parametrize(
    "settings",
    [
        {"lora_target_linear": True, "lora_dropout": 0.05},
        {"lora_target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0},
        {"adapter": None},
        {"lora_target_modules": ["q_proj", "v_proj"], "adapter": "qlora", "load_in_4bit": True},
        {"lora_target_modules": ["q_proj", "v_proj"], "gradient_checkpointing": True},
        {
            "lora_target_modules": ["q_proj", "v_proj"],
            "adapter": "qlora",
            "load_in_4bit": True,
            "gradient_checkpointing": True,
        },
        {"adapter": None, "fp16": True, "bf16": False},
    ],
    ids=["lora-all-dropout", "lora-qv", "full", "qlora-qv", "lora-qv-ckpt", "qlora-qv-ckpt", "full-fp16"],
)
def test_activation_formula_matches_autograd(tmp_path: Path, alpaca_file: Path, settings: dict) -> None:
    """Per layer and token, the planned activations are within 5% of the bytes autograd saves
    (measured as the difference between a 4-layer and a 2-layer model, so the logits drop out).
    QLoRA (real NF4 on the CPU): the residual stream and the 4-bit layers' outputs are float32
    after prepare_model_for_kbit_training. With gradient checkpointing each layer keeps its input
    (the layer recomputed in the backward is the same for 2 and 4 layers, so it drops out)."""
    import torch

    tokens = 128
    measured, planned = {}, {}
    for layers in (2, 4):
        folder = tmp_path / f"l{layers}"
        folder.mkdir()
        torch.manual_seed(0)
        from transformers import LlamaConfig, LlamaForCausalLM

        LlamaForCausalLM(LlamaConfig(**SMALL_LLAMA, num_hidden_layers=layers)).save_pretrained(folder)
        cfg = tiny_cfg(
            folder, alpaca_file, **{"bf16": True, "micro_batch_size": 1, "sequence_len": tokens, **settings}
        )
        plan = build_plan(cfg, count_tokens=False)
        # 16-bit copies of float32 weights are saved tensors too; under checkpointing only
        # autocast's cache holds them (not seen here)
        copies = () if cfg.gradient_checkpointing else ("autocast_copies",)
        planned[layers] = line_bytes(plan, "activations", *copies)
        measured[layers] = saved_activation_bytes(cfg, tokens)
    per_layer = (measured[4] - measured[2]) / 2
    assert (planned[4] - planned[2]) / 2 == pytest.approx(per_layer, rel=0.05)


# ---------------------------------------------------------------------------------------------
# Review 1: precision per GPU, dtypes of saved modules, saved adapters, errors, the Hub

LLAMA_1B = {  # Llama-3.2-1B's shape: a full fine-tune fits 16 GiB in bf16, not in fp16 + float32 masters
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
}


def model_folder(root: Path, config: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    return root


def full_finetune_cfg(folder: Path, bf16: object) -> FtConfig:
    return FtConfig.model_validate(
        {
            "base_model": str(folder),
            "datasets": [{"path": "org/data", "type": "alpaca"}],
            "bf16": bf16,
            "sequence_len": 512,
            "micro_batch_size": 1,
            "gradient_checkpointing": True,
        }
    )


def fit(plan: Plan, name: str):  # -> GpuFit
    return next(g for g in plan.gpus if g.name == name)


def test_each_gpu_row_has_the_total_of_its_own_precision(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "l1b", LLAMA_1B)
    auto = build_plan(full_finetune_cfg(folder, "auto"), count_tokens=False)
    t4, a100 = fit(auto, "T4"), fit(auto, "A100 80GB")
    assert (t4.compute_dtype, a100.compute_dtype) == ("float16", "bfloat16")
    assert auto.total_bytes == a100.needs_bytes < 16 * 2**30  # the lines shown: a GPU with bf16
    assert t4.needs_bytes is not None and t4.needs_bytes > 16 * 2**30 and not t4.fits  # float32 masters
    on_t4 = build_plan(full_finetune_cfg(folder, "auto"), gpu="T4", count_tokens=False)
    assert on_t4.total_bytes == t4.needs_bytes and on_t4.budget == fit(on_t4, "T4")
    assert fit(on_t4, "A100 80GB") == a100  # the other rows keep their own totals

    forced = build_plan(full_finetune_cfg(folder, True), count_tokens=False)
    assert fit(forced, "T4").why_not == "no bfloat16" and not fit(forced, "T4").fits
    with pytest.raises(FtError, match="--gpu T4: bf16 is true, but the T4 has no bfloat16"):
        build_plan(full_finetune_cfg(folder, True), gpu="t4", count_tokens=False)


def test_modules_to_save_keep_the_base_dtype() -> None:
    """peft's ModulesToSaveWrapper copies the module as it is: bf16 for LoRA on a bf16 base (the
    adapter itself is float32), float32 after prepare_model_for_kbit_training."""
    head = 32000 * 4096
    lora = llama2_plan(
        "load_in_4bit=false", "adapter=lora", "fp16=false", "bf16=true", "lora_modules_to_save=[lm_head]"
    )
    assert lora.trainable_parameters == 33_554_432 + head
    assert line_bytes(lora, "adapter") == 4 * 33_554_432 + 2 * head
    assert line_bytes(lora, "gradients") == 4 * 33_554_432 + 2 * head
    qlora = llama2_plan("lora_modules_to_save=[lm_head]")
    assert line_bytes(qlora, "adapter") == 4 * (33_554_432 + head)


def test_a_saved_adapter_is_planned_with_its_own_settings(tmp_path: Path) -> None:
    saved = tmp_path / "adapter"
    saved.mkdir()
    (saved / "adapter_config.json").write_text(
        json.dumps({"r": 4, "target_modules": ["q_proj"], "use_dora": False})
    )
    plan = llama2_plan(f"lora_model_dir={saved}", "lora_target_modules=", "lora_target_linear=true")
    assert plan.trainable_parameters == 32 * 4 * (4096 + 4096)
    assert plan.adapter is not None and plan.adapter["targets"] == ["q_proj"] and plan.adapter["rank"] == 4
    (saved / "adapter_config.json").write_text(json.dumps({"r": 4, "target_modules": ".*proj"}))
    with pytest.raises(FtError, match=r"lora_model_dir: .* names its target modules by a pattern"):
        llama2_plan(f"lora_model_dir={saved}")


def test_gpu_names_and_memory_sizes_are_checked() -> None:
    from ft.cli.plan import parse_memory
    from ft.plan.memory import find_gpu

    assert find_gpu("4090") is not None and find_gpu("4090").name == "RTX 4090"  # type: ignore[union-attr]
    assert find_gpu("a100") is None  # two of them
    for text in ("0", "0.0001MB", "99999999999999999999999"):
        with pytest.raises(FtError, match="--memory"):
            parse_memory(text)


def plan_exit(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from ft.cli.app import main

    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def linear_targets_of(folder: Path) -> list[str]:
    """--set arguments: the model in `folder`, LoRA on all its linear layers."""
    return [
        "--set",
        f"base_model={folder}",
        "--set",
        "lora_target_modules=",
        "--set",
        "lora_target_linear=true",
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{not json", "is not a valid JSON file"),
        ('{"model_type": "nosuchmodel"}', "nosuchmodel"),
        ('{"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100}', "mamba"),
    ],
    ids=["broken-json", "unknown-type", "mamba"],
)
def test_unplannable_models_exit_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, expected: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    settings = linear_targets_of(folder)
    code, shown = plan_exit(["plan", str(LLAMA2_QLORA), *settings], capsys)
    assert code == 2, shown
    assert expected in " ".join(shown.split()), shown
    assert "Traceback" not in shown


def test_gpt2_conv1d_layers_are_linear_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GPT-2's linear layers are transformers' Conv1D: lora_target_linear finds them, as at train time."""
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100}'
    )
    settings = linear_targets_of(folder)
    from ft.cli.app import main

    main(["plan", str(LLAMA2_QLORA), "--json", *settings])  # exit 0: returns
    adapter = json.loads(capsys.readouterr().out)["adapter"]
    assert sorted(adapter["targets"]) == ["c_attn", "c_fc", "c_proj"], adapter


def hub_cache_with(root: Path, repo_id: str, tokenizer_from: Path | None) -> Path:
    home = fake_hub_cache(root, repo_id)
    if tokenizer_from is not None:
        snapshot = next((home / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots").iterdir())
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tokenizer_from / name, snapshot / name)
    return home


def test_token_count_never_waits_on_the_hub(tmp_path: Path, tiny_model_dir: Path, alpaca_file: Path) -> None:
    """Online mode (no HF_HUB_OFFLINE) with an unroutable Hub: the config and the tokenizer come
    from the cache or not at all, so the plan returns at once (it used to retry for 4 minutes)."""
    config = tmp_path / "run.yml"
    config.write_text(
        f"base_model: org/llama\nadapter: lora\nlora_target_modules: [q_proj]\nmax_steps: 10\n"
        f"datasets:\n  - path: {alpaca_file}\n    type: alpaca\n"
    )
    env = {"HF_ENDPOINT": "http://10.255.255.1", "HF_HUB_OFFLINE": ""}
    without = json.loads(
        run_ft(["plan", str(config), "--json"], hub_cache_with(tmp_path / "a", "org/llama", None), env).stdout
    )
    assert "the tokenizer of org/llama is not in the local Hugging Face cache" in without["tokens"]["how"]
    assert without["tokens"]["how"].startswith("estimated")
    home = hub_cache_with(tmp_path / "b", "org/llama", tiny_model_dir)
    counted = json.loads(run_ft(["plan", str(config), "--json"], home, env).stdout)
    assert counted["tokens"]["how"].startswith("counted"), counted["tokens"]


HUB_ERRORS = {
    "missing": "RepoNotFound",
    "gated": "GatedRepo",
    "norev": "RevisionNotFound",
    "noconfig": "EntryNotFound",
}


def test_hub_answers_are_told_apart_from_an_unreachable_hub(tmp_path: Path) -> None:
    import http.server
    import threading

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            if self.path == "/":  # ft.config.hub's probe: the Hub answers
                self.send_response(200)
                self.end_headers()
                return
            code = next(c for name, c in HUB_ERRORS.items() if f"/org/{name}/" in self.path)
            self.send_response(404 if code != "GatedRepo" else 401)
            self.send_header("X-Error-Code", code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    code = (
        "from ft.plan.architecture import load_model_config\nfrom ft.config.schema import FtConfig\nfrom ft.base.errors import FtError\n"
        f"for name in {list(HUB_ERRORS)}:\n"
        "    cfg = FtConfig.model_validate({'base_model': f'org/{name}', 'datasets': [{'path': 'a/b', 'type': 'alpaca'}]})\n"
        "    try:\n        load_model_config(cfg)\n    except FtError as err:\n        print(name, err.message)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
    env.pop("HF_HUB_OFFLINE", None)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
    said = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert "no such repository" in said["missing"], out.stderr
    assert "gated" in said["gated"]
    assert "has no revision" in said["norev"]
    assert "has no config.json" in said["noconfig"]
    assert not any("cannot be reached" in message for message in said.values())


def test_the_download_hint_carries_the_revision() -> None:
    from ft.plan.architecture import _no_config_error

    hint = _no_config_error("org/name", "v2", "why").hint or ""
    assert "hf download org/name config.json --revision v2" in hint


@pytest.mark.parametrize(
    ("base_model", "expected"),
    [("models/broken-config", "is not a valid JSON file"), ("data/rows.jsonl", "is a file")],
    ids=["87-bad-config-json", "88-base-model-is-a-file"],
)
def test_corpus_models_exit_2_in_plan(
    capsys: pytest.CaptureFixture[str], base_model: str, expected: str
) -> None:
    """Cases 87 and 88 of tests/bad_configs, through `ft plan` (which does not check files first)."""
    folder = REPO / "tests" / "bad_configs" / base_model
    code, shown = plan_exit(["plan", str(LLAMA2_QLORA), "--set", f"base_model={folder}"], capsys)
    assert code == 2, shown
    assert expected in " ".join(shown.split())
    assert "Traceback" not in shown
