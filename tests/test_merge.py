"""`ft merge` on the tiny model: merged logits against base+adapter, a plain transformers load, an
overfitted fact surviving the merge, streaming against in-memory, QLoRA runs, refusals, and an
interrupted merge leaving nothing behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from test_force import hidden
from test_train import run_cli, write_config

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
ANSWER = "Paris."
PROBE = "Give three tips for staying healthy."


def train_run(tmp_path: Path, model_dir: Path, name: str, **overrides: object) -> Path:
    data = tmp_path / f"{name}.jsonl"
    data.write_text(json.dumps({"instruction": QUESTION, "output": ANSWER}) + "\n")
    config = write_config(
        tmp_path,
        model_dir,
        name=name,
        datasets=[{"path": str(data), "type": "alpaca"}],
        **overrides,
    )
    assert run_cli("train", str(config)) == 0
    return tmp_path / name


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fact, 30 steps at a high learning rate: the adapter learns to answer it."""
    return train_run(
        tmp_path_factory.mktemp("merge"),
        tiny_model_dir,
        "run",
        max_steps=30,
        save_steps=30,
        learning_rate=0.02,
    )


@pytest.fixture(scope="module")
def merged(lora_run: Path) -> Path:
    assert run_cli("merge", str(lora_run)) == 0
    return lora_run / "merged"


def base_with_adapter(run: Path) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    info = json.loads((run / "run.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(info["base_model_path"], dtype="float32")
    return PeftModel.from_pretrained(base, run).eval()


def plain_model(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def logits(model: Any, ids: Any) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=ids).logits


def chat_ids(folder: Path, question: str) -> Any:
    """The prompt as the merged folder's chat template renders it (the training format)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )["input_ids"]


def greedy(model: Any, ids: Any, new_tokens: int = 8) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=new_tokens, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


def state_dict_of(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def test_merged_logits_match_base_plus_adapter(lora_run: Path, merged: Path) -> None:
    ids = chat_ids(merged, PROBE)
    diff = (logits(plain_model(merged), ids) - logits(base_with_adapter(lora_run), ids)).abs().max()
    assert float(diff) <= 1e-4
    record = json.loads((merged / "ft_merge.json").read_text())
    assert record["dtype"] == "float32" and record["tolerance"] == 1e-4
    assert 0 <= record["max_abs_logit_diff"] <= 1e-4
    assert record["run_dir"] == str(lora_run.resolve()) and record["library_versions"]["peft"]
    # The merge changed the weights: the adapter was trained, so merged != base.
    info = json.loads((lora_run / "run.json").read_text())
    base_logits = logits(plain_model(Path(info["base_model_path"])), ids)
    assert float((logits(plain_model(merged), ids) - base_logits).abs().max()) > 1e-2


def test_merged_folder_is_a_plain_transformers_model(lora_run: Path, merged: Path) -> None:
    from transformers import AutoTokenizer, pipeline

    assert {"config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in merged.iterdir()
    }
    assert (merged / "chat_template.jinja").read_text() == (lora_run / "chat_template.jinja").read_text()
    generator = pipeline("text-generation", model=str(merged))
    out = generator(QUESTION, max_new_tokens=4, do_sample=False)
    assert out[0]["generated_text"].startswith(QUESTION)

    terminator = json.loads((lora_run / "run.json").read_text())["terminator"]
    tokenizer = AutoTokenizer.from_pretrained(merged)
    terminator_id = tokenizer.convert_tokens_to_ids(terminator)
    generation = json.loads((merged / "generation_config.json").read_text())
    eos = generation["eos_token_id"]
    assert terminator_id in (eos if isinstance(eos, list) else [eos])
    # config.json agrees with the tokenizer and generation_config.json (the tiny base has no pad id;
    # the run pads with UNK).
    config = json.loads((merged / "config.json").read_text())
    assert config["pad_token_id"] == tokenizer.pad_token_id == generation["pad_token_id"] is not None
    assert config["eos_token_id"] == tokenizer.eos_token_id == eos[0]
    assert config["bos_token_id"] == tokenizer.bos_token_id == generation["bos_token_id"]
    # Nothing names a folder of this machine's caches; ft_merge.json names the base as run.json does.
    record = json.loads((merged / "ft_merge.json").read_text())
    assert record["base_model_name"] == json.loads((lora_run / "run.json").read_text())["base_model_name"]
    assert "_name_or_path" not in config
    # The folder and its files get the umask's modes, not mkdtemp's 0700 and safetensors' 0600.
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(merged.stat().st_mode) == 0o777 & ~umask
    for path in (merged / "model.safetensors", merged / "ft_merge.json", merged / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_overfitted_fact_survives_the_merge(lora_run: Path, merged: Path) -> None:
    from transformers import AutoTokenizer

    ids = chat_ids(merged, QUESTION)
    answer_ids = greedy(plain_model(merged), ids)
    assert answer_ids == greedy(base_with_adapter(lora_run), ids)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert tokenizer.decode(answer_ids, skip_special_tokens=True).strip().startswith(ANSWER)
    assert tokenizer.eos_token_id in answer_ids  # it learned to stop, and the merged model stops there


def test_streaming_and_in_memory_give_the_same_tensors(
    lora_run: Path, merged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    out = tmp_path / "streamed"
    assert run_cli("merge", str(lora_run), "--streaming", "--out", str(out), "--max-shard-size", "100KB") == 0
    # Not a terminal (captured): each step a plain line, then its time.
    lines = capsys.readouterr().out.splitlines()
    for step in ("loading the base model (float32) with the adapter", "merging and writing tensor by tensor"):
        assert f"{step} ..." in lines
        assert any(re.fullmatch(rf"{re.escape(step)}: \d+\.\d s", line) for line in lines), lines
    assert len(list(out.glob("model-*.safetensors"))) > 2 and (out / "model.safetensors.index.json").is_file()
    streamed, in_memory = state_dict_of(out), state_dict_of(merged)
    assert streamed.keys() == in_memory.keys()
    for name, tensor in in_memory.items():
        assert streamed[name].dtype == tensor.dtype == torch.float32
        assert torch.allclose(streamed[name], tensor, rtol=0, atol=1e-6), name
    assert json.loads((out / "ft_merge.json").read_text())["mode"] == "streaming"
    assert json.loads((out / "config.json").read_text()) == json.loads((merged / "config.json").read_text())


def test_quantized_dtypes_are_refused(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("merge", str(lora_run), "--dtype", "nf4", "--out", str(tmp_path / "m")) == 2
    err = capsys.readouterr().err
    assert "choose bf16, fp16 or fp32" in err and "never merges into a quantized" in err
    assert not (tmp_path / "m").exists()


def test_qlora_run_merges_into_an_unquantized_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = train_run(
        tmp_path, tiny_model_dir, "qrun", adapter="qlora", load_in_4bit=True, max_steps=4, save_steps=4
    )
    assert run_cli("merge", str(run), "--streaming") == 0
    out = run / "merged"
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    ids = chat_ids(out, PROBE)
    # Against the unquantized base + adapter (the 4-bit base would differ by the quantization error).
    diff = (logits(plain_model(out), ids) - logits(base_with_adapter(run), ids)).abs().max()
    assert float(diff) <= 1e-4


def test_existing_output_needs_force_and_force_replaces_only_fts_merges(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli("merge", str(lora_run), "--out", str(out), "--no-verify") == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").is_file()
    # Not a merge of ft's (no ft_merge.json): --force does not touch it.
    assert run_cli("merge", str(lora_run), "--out", str(out), "--no-verify", "--force") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "ft did not create (no ft_merge.json): ft will not delete it" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"

    ours = tmp_path / "merged"
    assert run_cli("merge", str(lora_run), "--out", str(ours), "--no-verify") == 0
    assert run_cli("merge", str(lora_run), "--out", str(ours), "--no-verify") == 2
    assert "replace it with --force" in capsys.readouterr().err
    assert run_cli("merge", str(lora_run), "--out", str(ours), "--no-verify", "--force") == 0
    assert (ours / "model.safetensors").is_file() and (ours / "ft_merge.json").is_file()
    assert hidden(tmp_path) == []  # the replaced merge is gone, no temporary folder left
    assert run_cli("merge", str(lora_run), "--out", str(lora_run), "--force") == 2
    assert "would replace the run folder" in capsys.readouterr().err


def test_killed_merge_leaves_the_previous_merge_whole_and_the_next_one_completes(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL while the new model is being written (its weights are in the temporary folder, the
    logit check is under way): the output keeps the previous merge, and the next ft merge removes
    the killed one's temporary folder and completes."""
    out = tmp_path / "merged"
    assert run_cli("merge", str(lora_run), "--out", str(out), "--no-verify") == 0
    previous = (out / "ft_merge.json").read_text()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ft", "merge", str(lora_run), "--out", str(out), "--force", "--streaming"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".merged.ft-merge-*.tmp/model.safetensors")):
        assert proc.poll() is None and time.monotonic() < deadline, "ft merge ended first"
        time.sleep(0.002)
    proc.kill()
    proc.wait(timeout=60)
    assert (out / "ft_merge.json").read_text() == previous
    assert len(hidden(tmp_path)) == 1  # the killed merge's temporary folder

    assert run_cli("merge", str(lora_run), "--out", str(out), "--force") == 0
    assert "left by an earlier ft merge that was killed" in " ".join(capsys.readouterr().out.split())
    assert hidden(tmp_path) == [] and (out / "ft_merge.json").read_text() != previous


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "in-memory"])
def test_full_disk_while_writing_the_merged_model(
    lora_run: Path, tmp_path: Path, streaming: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """The merged weights (about 500 kB) may not grow past 200 kB: a clear error, nothing at --out."""
    from test_interrupt import file_size_limit

    out = tmp_path / "merged"
    mode = "--streaming" if streaming else "--in-memory"
    with file_size_limit(200_000):
        code = run_cli("merge", str(lora_run), "--out", str(out), "--no-verify", mode)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "cannot write" in err and "disk full" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_interrupted_merge_leaves_no_output(lora_run: Path, tmp_path: Path) -> None:
    from ft.export.merge import merge_run

    def crash(folder: Path) -> None:
        assert (folder / "ft_merge.json").is_file()  # everything was written ...
        raise KeyboardInterrupt  # ... and then the user pressed Ctrl-C

    out = tmp_path / "merged"
    with pytest.raises(KeyboardInterrupt):
        merge_run(lora_run, out, verify=False, before_publish=crash)
    assert list(tmp_path.iterdir()) == []

    # Over an existing merge with --force: the old one stays whole.
    merge_run(lora_run, out, verify=False)
    before = state_dict_of(out)
    with pytest.raises(KeyboardInterrupt):
        merge_run(lora_run, out, verify=False, force=True, streaming=True, before_publish=crash)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]
    assert state_dict_of(out).keys() == before.keys()


def test_out_holding_the_current_folder_is_refused_before_merging(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M5: `--out .` (or `..`) was merged into, then failed to rename `.` away, losing the merge."""
    here = tmp_path / "here"
    here.mkdir()
    before = Path.cwd()
    os.chdir(here)
    try:
        for out in (".", ".."):
            assert run_cli("merge", str(lora_run), "--out", out, "--no-verify") == 2
            err = " ".join(capsys.readouterr().err.split())
            assert "would replace the current folder" in err and "Traceback" not in err
    finally:
        os.chdir(before)
    assert list(tmp_path.iterdir()) == [here] and list(here.iterdir()) == []


def test_what_appears_at_out_during_the_merge_is_not_replaced(lora_run: Path, tmp_path: Path) -> None:
    """L4: --out is checked again just before the merge is put in place."""
    from ft.base.errors import FtError
    from ft.export.merge import merge_run

    out = tmp_path / "merged"

    def someone_writes_there(folder: Path) -> None:
        out.mkdir()
        (out / "notes.txt").write_text("mine")

    with pytest.raises(FtError, match="ft did not create"):
        merge_run(lora_run, out, verify=False, force=True, before_publish=someone_writes_there)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"] and (out / "notes.txt").read_text() == "mine"


def test_previous_merge_set_aside_by_a_killed_merge_is_put_back(tmp_path: Path) -> None:
    """L3: killed between its two renames, an ft merge leaves the previous merge only in a hidden
    folder; the next one puts it back instead of deleting it."""
    from ft.export.merge import settle_stale_merges
    from ft.runs.outdir import host_name

    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = host_name()
    old = tmp_path / f".merged.ft-merge-old-{done.stdout.strip()}-{host}.abc.old"
    (old / "merged").mkdir(parents=True)
    (old / "merged" / "ft_merge.json").write_text("{}")
    tmp = tmp_path / f".merged.ft-merge-{done.stdout.strip()}-{host}.abc.tmp"
    tmp.mkdir()
    lines: list[str] = []
    settle_stale_merges(tmp_path / "merged", lines.append)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]
    assert (tmp_path / "merged" / "ft_merge.json").is_file()
    assert any("previous merge is back" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# The streaming merge against peft's merge_and_unload, on adapters ft train does not make by default


def peft_merged(model: Any, lora_config: Any, adapter_dir: Path) -> dict[str, Any]:
    import torch
    from peft import get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(model, lora_config)
    for name, param in peft_model.named_parameters():
        if "modules_to_save" in name:
            param.data += 0.1 * torch.randn_like(param)
    peft_model.save_pretrained(adapter_dir)
    return {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}


def stream_matches(base_dir: Path, adapter_dir: Path, expected: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from ft.export.merge_stream import stream_merge

    out = tmp_path / "streamed"
    out.mkdir()
    stream_merge(base_dir, adapter_dir, out, torch.float32, 20_000)
    streamed = state_dict_of(out)
    assert len(list(out.glob("*.safetensors"))) > 1
    for name, tensor in streamed.items():
        assert torch.allclose(tensor, expected[name], rtol=0, atol=1e-6), name


def test_stream_merge_rslora_modules_to_save_and_new_tokens(tmp_path: Path) -> None:
    from peft import LoraConfig

    from tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    tokenizer.add_tokens(["<new1>", "<new2>"])
    model.resize_token_embeddings(len(tokenizer))
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj"],
        modules_to_save=["embed_tokens", "lm_head"],
        use_rslora=True,
        init_lora_weights=False,
    )
    expected = peft_merged(model, config, tmp_path / "adapter")
    assert expected["model.embed_tokens.weight"].shape[0] == len(tokenizer)
    stream_matches(base_dir, tmp_path / "adapter", expected, tmp_path)


def test_stream_merge_fan_in_fan_out(tmp_path: Path) -> None:
    from peft import LoraConfig
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, init_lora_weights=False
    )
    expected = peft_merged(model, config, tmp_path / "adapter")
    stream_matches(base_dir, tmp_path / "adapter", expected, tmp_path)


def test_stream_merge_refuses_dora() -> None:
    from ft.base.errors import FtError
    from ft.export.merge_stream import check_streamable

    with pytest.raises(FtError, match="DoRA") as caught:
        check_streamable({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_dora": True})
    assert "--in-memory" in (caught.value.hint or "")


def test_bf16_paths_give_the_same_tensors(lora_run: Path, tmp_path: Path) -> None:
    """Both round W + delta once (peft's safe_merge would round the delta first: 1-ulp differences)."""
    import torch

    outs = {}
    for mode in ("--in-memory", "--streaming"):
        outs[mode] = tmp_path / mode.strip("-")
        assert (
            run_cli("merge", str(lora_run), mode, "--dtype", "bf16", "--no-verify", "--out", str(outs[mode]))
            == 0
        )
    streamed, in_memory = state_dict_of(outs["--streaming"]), state_dict_of(outs["--in-memory"])
    for name, tensor in in_memory.items():
        assert streamed[name].dtype == tensor.dtype == torch.bfloat16
        assert torch.equal(streamed[name], tensor), name
