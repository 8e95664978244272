"""The bad-config corpus: every file in tests/bad_configs is a mistake ft must catch before a model loads.

One file per mistake (NN-what-is-wrong.yml; data files and model folders they name lie beside them,
with paths relative to that folder). Each one, through the real CLI: exit code 2, no traceback, the
file named on the first line and the first problem line exactly as in EXPECTED (a regression test
of the wording). `ft train` stops on every one before torch is imported, so no model can be loaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ft.cli.app import main

CORPUS = Path(__file__).resolve().parent / "bad_configs"

EXPECTED = {
    "01-empty-file.yml": "the file holds no keys (it is empty or only comments)",
    "02-only-comments.yml": "the file holds no keys (it is empty or only comments)",
    "03-top-level-list.yml": "the top level is a list, expected a mapping of keys (key: value lines)",
    "04-top-level-text.yml": "the top level is text ('just some text'), expected a mapping of keys (key: value lines)",
    "05-unclosed-bracket.yml": "line 3, column 9: YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow sequence at line 2, column 22)",
    "06-bad-indentation.yml": "line 4, column 4: the indentation does not line up with the lines above (YAML syntax error)",
    "07-missing-colon-space.yml": "line 3, column 1: YAML syntax error: could not find expected ':' (while scanning a simple key at line 2, column 1)",
    "08-unclosed-quote.yml": "line 8, column 1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at line 2, column 13)",
    "09-duplicate-top-key.yml": "lora_r: given twice (lines 2 and 5); YAML would keep only the last",
    "10-duplicate-dataset-key.yml": "datasets[0].path: given twice (lines 5 and 7); YAML would keep only the last",
    "11-tab-indentation.yml": "line 5, column 1: a tab character; YAML does not allow tabs for indentation (use spaces)",
    "12-tab-after-colon.yml": "line 2, column 8: a tab character; YAML does not allow tabs here: use spaces (or quote a value that holds a tab)",
    "13-latin1-bytes.yml": "line 7, column 4: byte 0xe9 (offset 134) is not UTF-8 text",
    "14-utf16-file.yml": "the file is UTF-16 text, not UTF-8",
    "15-python-object-tag.yml": "line 7, column 13: the tag '!!python/object/apply:os.system' is not allowed: ft reads plain YAML and never builds Python objects",
    "16-python-name-tag.yml": "line 7, column 12: the tag '!!python/name:os.system' is not allowed: ft reads plain YAML and never builds Python objects",
    "17-unknown-tag.yml": "line 7, column 13: unknown YAML tag '!env': ft reads plain YAML (no tags)",
    "18-two-documents.yml": "line 7, column 1: a second YAML document (---): a config is one document",
    "19-undefined-alias.yml": "line 7, column 13: YAML syntax error: found undefined alias 'rank'",
    "20-number-as-key.yml": "line 7: a key must be a name, not '16' (YAML reads it as a number; quote it if it is meant as a name)",
    "21-boolean-as-key.yml": "line 7: a key must be a name, not 'on' (YAML reads it as a boolean; quote it if it is meant as a name)",
    "22-typo-top-level.yml": "lora_rr: unknown key (did you mean 'lora_r'?)",
    "23-typo-learning-rate.yml": "learnig_rate: unknown key (did you mean 'learning_rate'?)",
    "24-typo-in-dataset.yml": "datasets[0].feild_output: unknown key (did you mean 'field_output'?)",
    "25-typo-in-second-dataset.yml": "datasets[1].pth: unknown key (did you mean 'path'?)",
    "26-typo-in-test-dataset.yml": "test_datasets[0].splt: unknown key (did you mean 'split'?)",
    "27-key-wrong-case.yml": "Base_Model: unknown key (did you mean 'base_model'?)",
    "28-unknown-key.yml": "turbo_mode: unknown key",
    "29-axolotl-unsupported-key.yml": "rl: GRPO (online RL with reward functions) is not supported by ft: use rl: dpo, ipo or orpo",
    "30-missing-base-model.yml": "base_model: required, but not given",
    "31-missing-datasets.yml": "datasets: required, but not given",
    "32-empty-datasets.yml": "datasets: needs at least 1 item(s), got none",
    "33-dataset-without-path.yml": "datasets[0].path: required, but not given",
    "34-rank-as-word.yml": "lora_r: expected a whole number, got 'eight'",
    "35-rank-fraction.yml": "lora_r: expected a whole number, got 8.5",
    "36-learning-rate-word.yml": "learning_rate: expected a number, got 'fast'",
    "37-flag-not-boolean.yml": "sample_packing: expected true or false, got 'maybe'",
    "38-bf16-not-boolean.yml": "bf16: expected true, false or 'auto', got 'sometimes'",
    "39-boolean-as-number.yml": "micro_batch_size: expected a whole number, got true",
    "40-datasets-as-text.yml": "datasets: expected a list, got 'data/rows.jsonl'",
    "41-dataset-as-text.yml": "datasets[0]: expected a mapping of keys, got 'data/rows.jsonl'",
    "42-target-modules-as-text.yml": "lora_target_modules: expected a list, got 'q_proj' (write [q_proj]; a text is a regular expression over full module names, e.g. '.*(q_proj|v_proj)')",
    "43-special-tokens-as-list.yml": "special_tokens: expected a mapping (key: value), got a list",
    "44-epochs-as-list.yml": "num_epochs: expected a number, got a list",
    "45-base-model-null.yml": "base_model: is empty: give a Hub id or a local folder",
    "46-quant-type-unknown.yml": "bnb_4bit_quant_type: expected 'nf4' or 'fp4', got 'nf5'",
    "47-negative-rank.yml": "lora_r: must be greater than 0, got -8",
    "48-zero-rank.yml": "lora_r: must be greater than 0, got 0",
    "49-dropout-above-one.yml": "lora_dropout: must be less than 1, got 1.5",
    "50-learning-rate-zero.yml": "learning_rate: must be greater than 0, got 0",
    "51-learning-rate-negative.yml": "learning_rate: must be greater than 0, got -0.0002",
    "52-zero-batch.yml": "micro_batch_size: must be greater than 0, got 0",
    "53-negative-sequence-len.yml": "sequence_len: must be greater than 0, got -1",
    "54-warmup-ratio-above-one.yml": "warmup_ratio: must be less than 1, got 1.5",
    "55-negative-val-set.yml": "val_set_size: must be at least 0, got -0.1",
    "56-zero-epochs.yml": "num_epochs: must be greater than 0, got 0",
    "57-negative-seed.yml": "seed: must be at least 0, got -1",
    "58-zero-alpha.yml": "lora_alpha: must be greater than 0, got 0",
    "59-learning-rate-infinite.yml": "learning_rate: must be a finite number, got inf",
    "60-learning-rate-1e999.yml": "learning_rate: must be a finite number, got '1e999'",
    "61-learning-rate-nan.yml": "learning_rate: must be a finite number, got nan",
    "62-huge-rank.yml": "lora_r: must be at most 65536, got 99999999999999999999",
    "63-huge-sequence-len.yml": "sequence_len: must be at most 2147483647, got 1000000000000",
    "64-huge-seed.yml": "seed: must be at most 4294967295, got 99999999999999999999",
    "65-qlora-without-4bit.yml": "adapter: qlora needs load_in_4bit: true (or adapter: lora for a 16-bit or 8-bit base)",
    "66-4bit-and-8bit.yml": "load_in_8bit: load_in_4bit and load_in_8bit are exclusive: keep one",
    "67-fp16-and-bf16.yml": "fp16: fp16 and bf16 are exclusive: set one (bf16: auto picks bf16 where the GPU has it)",
    "68-warmup-steps-and-ratio.yml": "warmup_steps: warmup_ratio and warmup_steps are exclusive: set one",
    "69-8bit-full-finetune.yml": "load_in_8bit: a quantized base cannot be fully fine-tuned: set adapter: qlora or lora",
    "70-lora-without-targets.yml": "lora_target_modules: adapter: lora needs target layers: set lora_target_linear: true (every linear layer but the output head) or lora_target_modules: [q_proj, v_proj]",
    "71-val-set-and-test-datasets.yml": "test_datasets: val_set_size and test_datasets are exclusive: choose one eval split",
    "72-adapter-dir-without-adapter.yml": "lora_model_dir: an existing adapter needs adapter: lora or qlora",
    "73-no-input-format-alone.yml": "datasets[0].no_input_format: needs `format` too (the prompt for rows with an input)",
    "74-unknown-dataset-type.yml": "datasets[0].type: unknown format 'alpacca' (did you mean alpaca?)",
    "75-unknown-dataset-type-far.yml": "datasets[0].type: unknown format 'instruct': use one of alpaca, llama2_chat, phi2, phi3, completion, chat_template, input_output, an axolotl instruction type (alpaca:chat, oasst, context_qa.load_v2, ...; see docs/config.md), or give a custom `format`",
    "76-unknown-optimizer.yml": "optimizer: unknown optimizer 'adamw_torc' (did you mean adamw_torch?)",
    "77-unknown-chat-template.yml": "chat_template: unknown chat_template 'openai': use one of alpaca, aya, chatml, cohere, command_a, command_a_rag, command_a_tool_use, deepseek_v2, deepseek_v3, exaone, exaone4, falcon_h1, gemma, gemma3, gemma3n, gemma4, gemma4_unified, inst, jamba, llama3, llama3_2_vision, llama4, llava, metharme, mistral_v1, mistral_v2v3, mistral_v3_tekken, mistral_v7_tekken, nemotron_h, phi_3, phi_35, phi_4, pixtral, qwen2_vl, qwen3, qwen3_5, qwen_25, vicuna_v1.1, zephyr, fastchat_mistral, llama2_chat, phi2, phi3, tokenizer_default, jinja",
    "78-custom-format-unknown-field.yml": "datasets[0].format: unknown field {answer}: use {input}, {instruction}, {system}",
    "79-missing-data-file.yml": "datasets[0].path: 'data/missing.jsonl' does not exist (check the path; a Hub id has the form org/name)",
    "80-data-file-unknown-extension.yml": "datasets[0].path: 'data/rows.xlsx': cannot tell the file type from '.xlsx' (set ds_type)",
    "81-data-file-png-as-json.yml": "datasets[0].path: 'data/picture.json' is a PNG image, not JSON text",
    "82-data-file-text-as-parquet.yml": "datasets[0].path: 'data/rows-text.parquet' is not a Parquet file (Parquet files start with PAR1; this one is text)",
    "83-base-model-without-weights.yml": "base_model: 'models/config-only' holds no model weights (no model.safetensors or pytorch_model.bin)",
    "84-base-model-missing-folder.yml": "base_model: './models/absent' does not exist (check the path; a Hub id has the form org/name)",
    "85-base-model-pickle-weights.yml": "base_model: 'models/pickle-only' holds only pickle weights (pytorch_model.bin) and pickle files can run code when loaded: convert them to safetensors, or set allow_pickle_weights: true if you trust their source",
    "86-base-model-remote-code.yml": "base_model: 'models/remote-code' needs its own Python code (modeling_tiny.TinyForCausalLM, from config.json auto_map) and trust_remote_code is false: ft runs no code from a model unless told (set trust_remote_code: true if you trust it)",
    "87-base-model-bad-config-json.yml": "base_model: 'models/broken-config': config.json is not valid JSON (Expecting property name enclosed in double quotes: line 2 column 1 (char 24))",
    "88-base-model-is-a-file.yml": "base_model: 'data/rows.jsonl' is a file: give a model folder or a .gguf file",
    "89-base-model-not-an-id.yml": "base_model: 'my fine model' is neither an existing local model nor a Hub id (a Hub id has the form org/name)",
    "90-adapter-pickle-weights.yml": "lora_model_dir: 'models/adapter-pickle' holds only pickle weights (adapter_model.bin) and pickle files can run code when loaded: convert them to safetensors, or set allow_pickle_weights: true if you trust their source",
    "91-tokenizer-folder-empty.yml": "tokenizer_config: 'models/empty' holds no tokenizer (no tokenizer_config.json or tokenizer.json)",
    "92-deepspeed-missing.yml": "deepspeed: 'ds_zero2.json' is not a file: give a DeepSpeed JSON config file",
    "93-empty-dataset-path.yml": "datasets[0].path: must not be empty",
    "94-number-with-5000-digits.yml": "sequence_len: a number with 5,000 digits",
    "95-alias-bomb.yml": "anchors and aliases (&name, *name) expand to more than 100,000 values or refer to themselves",
    "96-recursive-alias.yml": "anchors and aliases (&name, *name) expand to more than 100,000 values or refer to themselves",
    "97-nested-too-deep.yml": "the YAML is nested too deeply to read",
    "98-data-file-utf16.yml": "datasets[0].path: 'data/rows-utf16.jsonl' is UTF-16 text: save it as UTF-8",
    "99-unknown-key-named-int.yml": "int: unknown key",
    "100-unknown-key-with-bracket.yml": "lora[r]: unknown key (did you mean 'lora_r'?)",
    "101-control-character.yml": "line 2, column 31: a control character (0x07) YAML does not allow (remove it)",
    "102-nul-byte.yml": "line 7, column 18: a control character (0x00) YAML does not allow (remove it)",
    "103-duplicate-key-same-line.yml": "base_model: given twice (both on line 1); YAML would keep only the last",
    "104-duplicate-dataset-key-same-line.yml": "datasets[0].path: given twice (both on line 5); YAML would keep only the last",
    "105-datasets-empty.yml": "datasets: is empty: give at least one dataset (- path: ...)",
    "106-date-as-text.yml": "wandb_run_id: expected text, got 2024-01-01 (YAML reads it as a date; quote it)",
    "107-data-files-number-item.yml": "datasets[0].data_files[1]: expected text, got 2024",
    "108-too-many-values.yml": "the config holds 100,017 values; a config holds a few hundred (at most 100,000)",
    "109-rl-orpo-with-ref-model.yml": "ref_model: ORPO has no reference model: remove it",
    "110-rl-prompt-len-fills-sequence.yml": "max_prompt_len: max_prompt_len 1024 leaves no room for the answers in sequence_len 1024: make it smaller than sequence_len",
    "111-rl-pair-type-without-rl.yml": "datasets[0].type: axolotl's chatml.intel is a preference-pair type: set rl: dpo, ipo or orpo",
    "112-rl-with-sample-packing.yml": "sample_packing: preference pairs are not packed (each batch is padded): set it false",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the corpus, so that a config that got through could not write into the repository."""
    folder = tmp_path_factory.mktemp("corpus") / "bad_configs"
    shutil.copytree(CORPUS, folder)
    return folder


def test_the_corpus_is_complete() -> None:
    names = sorted(path.name for path in CORPUS.glob("*.yml"))
    assert names == sorted(EXPECTED)
    assert len(names) >= 60


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_exits_2_naming_the_file_and_the_problem(
    name: str, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(corpus)  # data and model paths in the corpus are relative to its folder
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", name])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith(f"error: {name}: "), err
    assert lines[1] == f"  {EXPECTED[name]}", err
    assert "Traceback" not in err


def test_train_stops_on_every_bad_config_before_torch_is_imported(corpus: Path) -> None:
    """One process runs `ft train` on the whole corpus; a model cannot be loaded without torch."""
    code = (
        "import json, sys\n"
        "from ft.cli.app import main\n"
        "codes = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        main(['train', name])\n"
        "        codes[name] = 0\n"
        "    except SystemExit as exit_:\n"
        "        codes[name] = exit_.code\n"
        "loaded = ('torch', 'peft', 'trl', 'datasets', 'transformers.modeling_utils', 'ft.data.tokens')\n"
        "print(json.dumps({'codes': codes, 'loaded': [m for m in loaded if m in sys.modules]}))\n"
    )
    names = sorted(EXPECTED)
    proc = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=corpus, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["codes"] == dict.fromkeys(names, 2)
    assert result["loaded"] == []
    assert "Traceback" not in proc.stderr
    assert [name for name in names if f"  {EXPECTED[name]}\n" not in proc.stderr] == []
    assert not (corpus / "outputs").exists()
    assert not (corpus / "HACKED").exists()  # 15-python-object-tag.yml would `touch HACKED` if run
