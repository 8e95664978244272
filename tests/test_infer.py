"""`ft generate` and `ft chat` on a tiny trained run and on a merged copy of it; the prompt given to
the model is token for token the prompt of a training example, for every format."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

RUN_NAME = "infer-run"


def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny lora run (8 steps, 4 held-out rows), trained once per test session and shared by the
    modules that need one (test_infer, test_eval): a second caller finds the finished folder."""
    from test_train import run_cli, write_config

    base = tmp_path_factory.getbasetemp() / RUN_NAME
    run = base / "run"
    if (run / "run.json").is_file():
        return run
    base.mkdir(exist_ok=True)
    config = write_config(base, tiny_model_dir, val_set_size=4, save_steps=100)
    assert run_cli("train", str(config)) == 0
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return trained_run(tmp_path_factory, tiny_model_dir)


@pytest.fixture(scope="module")
def merged_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run merged into full weights with its tokenizer, and no ft metadata (like a bare `ft merge`)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((run_dir / "run.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(info["base_model_path"])
    merged = PeftModel.from_pretrained(base, run_dir).merge_and_unload()
    out = tmp_path_factory.mktemp("merged")
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(run_dir).save_pretrained(out)
    return out


def invoke(*args: str, input: str | None = None) -> Any:
    from ft.cli.app import app

    result = CliRunner().invoke(app, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


INPUT_ROWS: list[dict[str, Any]] = [
    {"prompt": "What is the capital of France?"},
    {"messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]},
    {"instruction": "Translate to French: good morning"},
    {"instruction": "Summarize the following text in one sentence.", "input": "The quick brown fox."},
]


def test_generate_writes_one_line_per_input_line(run_dir: Path, merged_dir: Path, tmp_path: Path) -> None:
    source = write_rows(tmp_path / "in.jsonl", INPUT_ROWS)
    outputs = {}
    for name, model in (("run", run_dir), ("merged", merged_dir)):
        out = tmp_path / f"{name}.jsonl"
        invoke("generate", str(model), "--input", str(source), "--output", str(out), "--max-new-tokens", "12")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == len(INPUT_ROWS)
        for row, given in zip(rows, INPUT_ROWS, strict=True):
            assert {k: v for k, v in row.items() if k != "generated"} == given
            assert isinstance(row["generated"], str) and "</s>" not in row["generated"]
        outputs[name] = [row["generated"] for row in rows]
    # Greedy decoding is deterministic, and the merged weights with the saved chat template answer
    # as the run folder (base + adapter, ft's own renderer) does.
    assert outputs["merged"] == outputs["run"]

    single = invoke(
        "generate", str(run_dir), "--prompt", "What is the capital of France?", "--max-new-tokens", "12"
    )
    assert single.stdout.strip().splitlines()[-1] == outputs["run"][0]


def test_generate_needs_prompt_or_input(run_dir: Path) -> None:
    from ft.base.errors import FtError
    from ft.cli.app import app

    result = CliRunner().invoke(app, ["generate", str(run_dir)])
    assert isinstance(result.exception, FtError) and "--prompt" in result.exception.message


def test_chat_loop_reset_and_exit(run_dir: Path) -> None:
    lines = "What is 2 + 2?\nAnd 3 + 3?\n/reset\n/nonsense\nHello\n/exit\nnever read\n"
    result = invoke("chat", str(run_dir), "--max-new-tokens", "6", "--temperature", "0", input=lines)
    out = result.stdout
    assert out.count("assistant>") == 3
    assert "(new conversation)" in out and "unknown command /nonsense" in out
    assert "you> " in out and "never read" not in out


def test_chat_session_keeps_the_history_and_reset_clears_it(run_dir: Path) -> None:
    from ft.infer.generate import ChatSession, GenerationSettings
    from ft.infer.loading import load_for_inference

    loaded = load_for_inference(run_dir)
    session = ChatSession(loaded, GenerationSettings(max_new_tokens=4), system="Be brief.")
    streamed: list[str] = []
    answer = session.reply("What is 2 + 2?", on_text=streamed.append)
    assert "".join(streamed).strip() == answer
    second = session.messages("And 3 + 3?")
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[2].content == answer
    assert session.prompt_tokens("And 3 + 3?") > session.prompt_tokens("x")
    session.reset()
    assert [m.role for m in session.messages("x")] == ["system", "user"]


def test_stops_at_the_terminator_and_strips_it(run_dir: Path) -> None:
    from ft.infer.generate import decode_answer
    from ft.infer.loading import load_for_inference

    loaded = load_for_inference(run_dir)
    tokenizer = loaded.tokenizer
    assert loaded.stop_ids == [tokenizer.eos_token_id]
    ids = tokenizer("Paris.", add_special_tokens=False)["input_ids"]
    assert decode_answer(tokenizer, [*ids, tokenizer.eos_token_id, *ids], loaded.stop_ids) == "Paris."


# ---------------------------------------------------------------------------------------------
# The inference prompt is the training prompt


FORMAT_CASES = {
    "alpaca": {"type": "alpaca"},
    "llama2_chat": {"type": "llama2_chat"},
    "phi2": {"type": "phi2"},
    "phi3": {"type": "phi3"},
    "chat_phi3": {"type": "chat_template"},
    "chat_llama2": {"type": "chat_template"},
}
TOP_LEVEL = {"chat_phi3": {"chat_template": "phi3"}, "chat_llama2": {"chat_template": "llama2_chat"}}


def _config(tmp_path: Path, model_dir: Path, dataset: dict[str, Any], **top: Any) -> Any:
    from ft.config.load import load_config

    if dataset["type"] == "chat_template":
        rows: list[dict[str, Any]] = [
            {
                "messages": [
                    {"role": "user", "content": "What is 2 + 2?"},
                    {"role": "assistant", "content": "4"},
                ]
            }
        ]
    else:
        rows = [{"instruction": "What is 2 + 2?", "output": "4"}]
    data = write_rows(tmp_path / "data.jsonl", rows)
    path = tmp_path / "c.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "base_model": str(model_dir),
                "datasets": [{"path": str(data), **dataset}],
                "sequence_len": 256,
                **top,
            }
        )
    )
    return load_config(path)


def _loaded_for(cfg: Any, tokenizer: Any, from_template: bool) -> Any:
    """A LoadedModel without weights: ft's renderer (run folder) or the saved chat template (merged)."""
    from ft.data.prompts import special_tokens_of
    from ft.data.renderers import renderer_for_config
    from ft.infer.loading import LoadedModel, folder_chat_format

    tokens = special_tokens_of(tokenizer)
    fmt = folder_chat_format(tokenizer) if from_template else renderer_for_config(cfg, tokenizer)
    return LoadedModel(None, tokenizer, fmt, tokens, tokens.eos, [tokenizer.eos_token_id], "test")


@pytest.mark.parametrize("case", sorted(FORMAT_CASES))
@pytest.mark.parametrize("from_template", [False, True], ids=["run", "merged"])
def test_generation_prompt_is_the_training_prompt(
    case: str, from_template: bool, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from ft.data.chat_templates import chat_template_jinja
    from ft.data.pipeline import preview_examples
    from ft.data.tokens import IGNORE_INDEX
    from ft.infer.generate import prompt_ids, render_row
    from ft.models.tokenizer import load_tokenizer

    cfg = _config(tmp_path, tiny_model_dir, FORMAT_CASES[case], **TOP_LEVEL.get(case, {}))
    tokenizer = load_tokenizer(cfg)
    tokenizer.chat_template = chat_template_jinja(cfg, tokenizer)  # as ft train saves it
    [example], _ = preview_examples(cfg, tokenizer, 1)
    loaded = _loaded_for(cfg, tokenizer, from_template)
    ids = prompt_ids(loaded, render_row(loaded, {"prompt": "What is 2 + 2?"}))
    assert example.input_ids[: len(ids)] == ids
    # The prompt ends exactly where training starts: its tokens are masked, the next one is trained.
    assert all(label == IGNORE_INDEX for label in example.labels[: len(ids)])
    assert example.labels[len(ids)] != IGNORE_INDEX


def test_instruction_with_input_uses_the_input_form(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ft.data.prompts import ALPACA_PREAMBLE_INPUT, segments_text
    from ft.infer.generate import render_row
    from ft.models.tokenizer import load_tokenizer

    cfg = _config(tmp_path, tiny_model_dir, {"type": "alpaca"})
    tokenizer = load_tokenizer(cfg)
    loaded = _loaded_for(cfg, tokenizer, from_template=False)
    text = segments_text(render_row(loaded, {"instruction": "Summarize.", "input": "A fox."}))
    assert text.endswith(
        f"{ALPACA_PREAMBLE_INPUT}\n\n### Instruction:\nSummarize.\n\n### Input:\nA fox.\n\n### Response:\n"
    )


def test_phi3_terminator_is_a_stop_token(tiny_tokenizer: Any, tmp_path: Path) -> None:
    from ft.data.prompts import PHI3_END, special_tokens_of
    from ft.infer.loading import folder_terminator, stop_token_ids

    end_id = tiny_tokenizer.convert_tokens_to_ids(PHI3_END)
    eos_id = tiny_tokenizer.eos_token_id
    assert stop_token_ids(tiny_tokenizer, PHI3_END) == [eos_id, end_id]
    assert stop_token_ids(tiny_tokenizer, "</s>", extra=[eos_id, end_id]) == [eos_id, end_id]
    # A merged folder: ft_merge.json's terminator wins; without it, EOS (no <|end|> in the template).
    tokens = special_tokens_of(tiny_tokenizer)
    assert folder_terminator(tmp_path, tiny_tokenizer, tokens) == "</s>"
    (tmp_path / "ft_merge.json").write_text(json.dumps({"terminator": PHI3_END}))
    assert folder_terminator(tmp_path, tiny_tokenizer, tokens) == PHI3_END


# ---------------------------------------------------------------------------------------------
# Batches, input checks, partial output

PROMPTS_OF_MANY_LENGTHS = [
    "Hi",
    "What is the capital of France?",
    "Give three tips for staying healthy. Eat well, sleep, exercise. What else?",
    "What is 2 + 2?",
    "Translate to French: good morning",
    "Summarize the following text in one sentence. The quick brown fox jumps over the lazy dog.",
    "Hello! How are you today?",
    "0123456789",
]


def test_batched_greedy_answers_equal_one_at_a_time(run_dir: Path) -> None:
    """Left padding must not change a greedy answer: prompts of very different lengths in one batch
    against each prompt alone, with enough new tokens for rows to stop at different steps."""
    from ft.infer.generate import (
        GenerationSettings,
        generate_batch,
        generate_from_ids,
        prompt_ids,
        render_row,
    )
    from ft.infer.loading import load_for_inference

    loaded = load_for_inference(run_dir)
    prompts = [prompt_ids(loaded, render_row(loaded, {"prompt": text})) for text in PROMPTS_OF_MANY_LENGTHS]
    assert len({len(p) for p in prompts}) == len(prompts)
    greedy = GenerationSettings(max_new_tokens=24)
    alone = [generate_from_ids(loaded.model, loaded, ids, greedy) for ids in prompts]
    assert generate_batch(loaded.model, loaded, prompts, greedy) == alone
    assert generate_batch(loaded.model, loaded, prompts[:3], greedy) == alone[:3]


def test_generate_checks_every_row_before_generating(run_dir: Path, tmp_path: Path) -> None:
    from ft.base.errors import FtError
    from ft.cli.app import app

    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"prompt": "fine"}\n{"prompt": \n["a list"]\n{"question": "x"}\n'
        '{"messages": [{"role": "assistant", "content": "no user"}]}\n{"prompt": ""}\n'
    )
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["generate", str(run_dir), "--input", str(source), "--output", str(out)])
    err = result.exception
    assert isinstance(err, FtError), result.output
    assert f"--input: {source}: 5 bad row(s), nothing generated" in err.message
    for expected in (
        "line 2: not JSON",
        "line 3: a JSON object is needed, got list",
        "line 4: needs prompt, messages or instruction (got: question)",
        "line 5: 'messages' has no user turn to answer",
        "line 6: 'prompt' must be non-empty text",
    ):
        assert expected in err.message
    assert "loading the model" not in result.output  # refused before the model loads
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_an_interrupted_generate_keeps_the_rows_done(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from test_interrupt import signal_self_when
    from test_train import run_cli

    rows = [{"prompt": f"{n}: What is the capital of France?"} for n in range(60)]
    source = write_rows(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    partial = tmp_path / ".out.jsonl.tmp"

    def some_rows_written() -> bool:
        return partial.is_file() and partial.read_text().count("\n") >= 2

    args = ["generate", str(run_dir), "--input", str(source), "--output", str(out), "--batch-size", "1"]
    with signal_self_when(some_rows_written, signal.SIGINT) as sent:
        code = run_cli(*args, "--max-new-tokens", "48")
    assert sent.is_set() and code == 130
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert 2 <= len(kept) < len(rows)
    assert [row["prompt"] for row in kept] == [row["prompt"] for row in rows[: len(kept)]]
    assert all(isinstance(row["generated"], str) for row in kept)
    assert not partial.exists()
    assert f"kept the {len(kept)} of {len(rows)} row(s) generated before the stop" in capsys.readouterr().err


def test_default_batch_size_follows_the_free_memory() -> None:
    import torch

    from ft.infer.generate import default_batch_size

    def model(layers: int, vocab: int) -> Any:
        config = SimpleNamespace(
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            vocab_size=vocab,
        )
        return SimpleNamespace(config=config, dtype=torch.float32, parameters=lambda: iter([torch.zeros(1)]))

    assert default_batch_size(model(2, 400), 50, 32) == 8  # a tiny model: the CPU's cap
    assert default_batch_size(model(10**6, 10**9), 50, 32) == 1  # rows that do not fit: one at a time
