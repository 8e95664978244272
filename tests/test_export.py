"""`ft export --gguf` on the tiny model: the file is the merged model (transformers' own GGUF loader
reads back the same logits), the tokenizer and chat template travel in the metadata, tensor types
follow llama.cpp's rules, the Ollama Modelfile renders the training format, the LoRA adapter alone,
and the refusals (unknown type, K-quant without llama.cpp, an architecture ft cannot write, an
existing file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from test_merge import base_with_adapter, logits, plain_model, train_run
from test_train import run_cli

pytestmark = pytest.mark.integration

PROBE = "Give three tips for staying healthy."


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_merge's one fact, in 10 steps: enough for the adapter to move the logits."""
    tmp = tmp_path_factory.mktemp("export")
    return train_run(tmp, tiny_model_dir, "run", max_steps=10, save_steps=10, learning_rate=0.02)


@pytest.fixture(scope="module")
def merged(lora_run: Path) -> Path:
    assert run_cli("merge", str(lora_run)) == 0
    return lora_run / "merged"


def gguf_model(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype="float32").eval()


def prompt_ids(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)(PROBE, return_tensors="pt")["input_ids"]


def reader(path: Path) -> Any:
    from gguf import GGUFReader

    return GGUFReader(path)


def field(path: Path, key: str) -> Any:
    found = reader(path).get_field(key)
    return None if found is None else found.contents()


def test_run_folder_exports_the_merged_model(lora_run: Path, tmp_path: Path, capsys) -> None:
    """A run folder is merged first; the f32 file is base+adapter exactly (read by transformers, which
    undoes llama.cpp's q/k permutation itself), and not the base."""
    out = tmp_path / "tiny-f32.gguf"
    assert run_cli("export", str(lora_run), "--gguf", "f32", "--out", str(out)) == 0
    ids = prompt_ids(lora_run)
    exported = logits(gguf_model(out), ids)
    assert float((exported - logits(base_with_adapter(lora_run), ids)).abs().max()) <= 1e-4
    info = json.loads((lora_run / "run.json").read_text())
    assert float((exported - logits(plain_model(Path(info["base_model_path"])), ids)).abs().max()) > 1e-2

    record = json.loads((tmp_path / "tiny-f32.ft_export.json").read_text())
    checks = record["verification"]
    assert record["merged_from_run"] is True and record["type"] == "f32"
    assert 0 <= checks["max_abs_logit_diff"] <= checks["tolerance"] == 1e-4
    assert checks["top1_agreement"] == 1.0 and checks["tokenizer_ids_equal"] is True
    assert checks["max_relative_tensor_error"] == 0.0 and checks["tensors_read_back"] == record["tensors"]
    assert record["base_model_name"] == info["base_model_name"]
    printed = capsys.readouterr().out
    assert "max |Δlogit|" in printed and "top-1 agreement 100.0%" in printed
    # Not a terminal (captured): the tensors written as plain lines, the last one complete.
    total = record["tensors"]
    assert f"tensors: {total}/{total} (100%)" in printed
    # the temporary merge is gone: only the three files
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny-f32.Modelfile",
        "tiny-f32.ft_export.json",
        "tiny-f32.gguf",
    ]


def test_metadata_holds_tokenizer_and_training_template(merged: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / "m.gguf"
    assert run_cli("export", str(merged), "--gguf", "f16", "--out", str(out)) == 0
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert field(out, "general.architecture") == "llama"
    assert field(out, "general.file_type") == 1  # MOSTLY_F16
    assert field(out, "tokenizer.chat_template") == (merged / "chat_template.jinja").read_text()
    assert field(out, "tokenizer.ggml.model") == "gpt2" and field(out, "tokenizer.ggml.pre") == "gpt-2"
    assert field(out, "tokenizer.ggml.add_bos_token") is True  # the tiny tokenizer puts BOS first
    assert field(out, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert field(out, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert len(field(out, "tokenizer.ggml.tokens")) == len(tokenizer)
    assert field(out, "llama.attention.head_count_kv") == 2 and field(out, "llama.block_count") == 2

    # transformers rebuilds the same tokenizer from the metadata, chat template included
    rebuilt = AutoTokenizer.from_pretrained(str(out.parent), gguf_file=out.name)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert rebuilt.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )
    text = "Hello! How are you today? ### Instruction:\n0123"
    assert rebuilt(text)["input_ids"] == tokenizer(text)["input_ids"]


@pytest.mark.parametrize(
    ("kind", "weight_type", "embedding_type"),
    [("bf16", "BF16", "BF16"), ("q8_0", "Q8_0", "Q8_0"), ("q4_0", "Q4_0", "Q8_0"), ("q5_1", "Q5_1", "Q8_0")],
)
def test_types_and_tensor_rules(
    merged: Path, tmp_path: Path, kind: str, weight_type: str, embedding_type: str
) -> None:
    """Norms stay float32; the embeddings and the head keep q8_0 under the 4/5-bit types; rows that
    are not whole blocks (the tiny model's 64-wide rows fit, its 400-token vocab is not a row size)
    would fall back to f16."""
    out = tmp_path / f"m-{kind}.gguf"
    assert run_cli("export", str(merged), "--gguf", kind, "--out", str(out)) == 0
    types = {t.name: t.tensor_type.name for t in reader(out).tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["output_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == weight_type and types["blk.1.ffn_down.weight"] == weight_type
    assert types["token_embd.weight"] == embedding_type and types["output.weight"] == embedding_type
    checks = json.loads((tmp_path / f"m-{kind}.ft_export.json").read_text())["verification"]
    assert checks["positions"] > 0 and 0.0 <= checks["top1_agreement"] <= 1.0
    assert (checks["tolerance"] is None) == (kind != "bf16")
    if kind == "q8_0":
        assert checks["top1_agreement"] >= 0.9 and checks["max_relative_tensor_error"] < 0.02


def test_modelfile_renders_the_training_format(lora_run: Path, merged: Path, tmp_path: Path) -> None:
    from ft.data.prompts import ALPACA_PREAMBLE

    out = tmp_path / "m.gguf"
    assert run_cli("export", str(merged), "--gguf", "q8_0", "--out", str(out)) == 0
    text = (tmp_path / "m.Modelfile").read_text()
    assert text.startswith("FROM ./m.gguf\n")
    assert (
        f'SYSTEM """{ALPACA_PREAMBLE}"""' in text
    )  # the preamble a conversation without a system prompt gets
    assert 'PARAMETER stop "</s>"' in text
    assert (
        '{{ else if eq $m.Role "user" }}{{ if eq $i 0 }}Below is an instruction that describes a task. '
        "Write a response that appropriately completes the request.\n\n### Instruction:\n"
        "{{ else }}### Instruction:\n{{ end }}{{ $m.Content }}\n\n### Response:\n"
    ) in text


def test_adapter_only(lora_run: Path, tmp_path: Path) -> None:
    import numpy as np
    from gguf import dequantize
    from safetensors.numpy import load_file

    from ft.export.gguf_arch import permute_rows

    out = tmp_path / "lora.gguf"
    assert run_cli("export", str(lora_run), "--adapter-only", "--gguf", "f32", "--out", str(out)) == 0
    assert field(out, "general.type") == "adapter" and field(out, "adapter.type") == "lora"
    config = json.loads((lora_run / "adapter_config.json").read_text())
    assert field(out, "adapter.lora.alpha") == pytest.approx(config["lora_alpha"])
    tensors = {t.name: t for t in reader(out).tensors}
    source = load_file(lora_run / "adapter_model.safetensors")
    assert len(tensors) == len(source)  # every A and B, nothing else
    prefix = "base_model.model.model.layers.0.self_attn."
    a = dequantize(
        tensors["blk.0.attn_q.weight.lora_a"].data, tensors["blk.0.attn_q.weight.lora_a"].tensor_type
    )
    b = dequantize(
        tensors["blk.0.attn_k.weight.lora_b"].data, tensors["blk.0.attn_k.weight.lora_b"].tensor_type
    )
    assert np.array_equal(
        a.reshape(source[prefix + "q_proj.lora_A.weight"].shape), source[prefix + "q_proj.lora_A.weight"]
    )
    # k's B rows in llama.cpp's rotary order (2 key/value heads)
    assert np.array_equal(
        b.reshape(source[prefix + "k_proj.lora_B.weight"].shape),
        permute_rows(source[prefix + "k_proj.lora_B.weight"], 2),
    )
    assert not (tmp_path / "lora.Modelfile").exists()


def sentencepiece_model(folder: Path) -> Path:
    """A tiny model with a SentencePiece-style tokenizer (BPE with byte fallback, `<0xNN>` tokens,
    Metaspace), as Llama 2 and Mistral save theirs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from tiny import BOS, CORPUS, EOS, UNK, build_model

    tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=[UNK, BOS, EOS, *byte_tokens], show_progress=False
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK)
    build_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_sentencepiece_tokenizer(tmp_path: Path) -> None:
    """Written as llama.cpp's `llama` tokenizer with scores and BYTE tokens; transformers rebuilds
    it from the file and encodes the probes (accents through byte fallback included) the same way."""
    from transformers import AutoTokenizer

    model = sentencepiece_model(tmp_path / "spm")
    out = tmp_path / "spm.gguf"
    assert run_cli("export", str(model), "--gguf", "f32", "--out", str(out)) == 0
    assert field(out, "tokenizer.ggml.model") == "llama"
    types = field(out, "tokenizer.ggml.token_type")
    tokens = field(out, "tokenizer.ggml.tokens")
    assert types[tokens.index("<0x0A>")] == 6 and types[tokens.index("<s>")] == 3  # BYTE, CONTROL
    scores = field(out, "tokenizer.ggml.scores")
    assert len(scores) == len(tokens) and min(scores) < 0
    rebuilt = AutoTokenizer.from_pretrained(str(out.parent), gguf_file=out.name)
    text = "The quick brown fox, ünïcode 0123!"
    assert rebuilt(text)["input_ids"] == AutoTokenizer.from_pretrained(model)(text)["input_ids"]


def test_refusals(lora_run: Path, merged: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.gguf"
    assert run_cli("export", str(merged), "--gguf", "q3", "--out", str(out)) == 2
    assert "'q3' is not a GGUF type ft writes" in capsys.readouterr().err
    assert run_cli("export", str(merged), "--gguf", "q4_k_m", "--out", str(out)) == 2
    assert "pip install llama-cpp-python" in capsys.readouterr().err
    assert run_cli("export", str(merged), "--gguf", "q4_0", "--adapter-only", "--out", str(out)) == 2
    assert not out.exists()

    out.write_text("mine")
    assert run_cli("export", str(merged), "--gguf", "f16", "--out", str(out)) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine"
    # a killed export's working folder (its process is gone) is cleared by the next one
    from ft.runs.outdir import host_name

    stale = tmp_path / f".x.gguf.ft-export-999999999-{host_name()}.abc.tmp"
    stale.mkdir()
    assert run_cli("export", str(merged), "--gguf", "f16", "--out", str(out), "--force", "--no-verify") == 0
    assert out.read_bytes()[:4] == b"GGUF"
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "x.Modelfile",
        "x.ft_export.json",
        "x.gguf",
    ]


def test_unsupported_architecture_is_named_before_any_work(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "falcon"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["FalconForCausalLM"], "model_type": "falcon"})
    )
    assert run_cli("export", str(folder), "--gguf", "f16") == 2
    err = capsys.readouterr().err
    assert "ft cannot write FalconForCausalLM as GGUF" in err and "LlamaForCausalLM" in err
    assert list(tmp_path.iterdir()) == [folder]


def other_architecture(folder: Path, name: str) -> Path:
    """A tiny random model of another architecture ft writes, with the tiny tokenizer."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from tiny import build_tokenizer, llama_like_config

    tokenizer = build_tokenizer()
    llama_like = llama_like_config(tokenizer)
    torch.manual_seed(0)
    if name == "mistral":
        model: Any = MistralForCausalLM(MistralConfig(**llama_like))
    elif name == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**llama_like))  # q/k/v biases: written as they are
    else:
        # 1024 positions: transformers' GGUF reader sizes GPT-2's position table from its default
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    with torch.no_grad():  # biases start at zero: give them values, so a lost bias shows in the logits
        for param_name, param in model.named_parameters():
            if param_name.endswith("bias"):
                param.normal_(0, 0.5)
    model.to(torch.float32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("name", "arch"), [("mistral", "llama"), ("qwen2", "qwen2"), ("gpt2", "gpt2")])
def test_other_architectures_give_the_same_logits(tmp_path: Path, name: str, arch: str) -> None:
    """Mistral, Qwen2 (q/k/v biases) and GPT-2 (transposed Conv1D weights) written at f32 and read
    back by transformers' GGUF loader: the logits of the folder's model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # (not named "mistral": transformers reads a llama file whose general.name is exactly that as an
    # architecture gguf-py does not have)
    folder = other_architecture(tmp_path / f"tiny-{name}", name)
    out = tmp_path / f"{name}.gguf"
    # transformers rebuilds any qwen2 file's tokenizer with Qwen's own split rule, which the tiny
    # tokenizer does not use (llama.cpp follows tokenizer.ggml.pre): ft's verification would see
    # other ids and refuse, so the Qwen2 file is checked here on the same ids instead.
    verify = "--no-verify" if name == "qwen2" else "--verify"
    assert run_cli("export", str(folder), "--gguf", "f32", "--out", str(out), verify) == 0
    assert field(out, "general.architecture") == arch
    ids = AutoTokenizer.from_pretrained(folder)(PROBE, return_tensors="pt")["input_ids"]
    original = logits(AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval(), ids)
    assert float((logits(gguf_model(out), ids) - original).abs().max()) <= 1e-4
    if name != "qwen2":
        checks = json.loads((tmp_path / f"{name}.ft_export.json").read_text())["verification"]
        assert checks["top1_agreement"] == 1.0 and checks["max_abs_logit_diff"] <= 1e-4
