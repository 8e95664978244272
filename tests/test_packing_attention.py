"""Packed examples do not attend to each other: through trl's padding-free collator (the path
`ft train` uses with sample_packing), the logits of each example inside a packed row equal its
logits alone, and the loss counts exactly the labels ft prepared."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.integration


def test_packed_row_logits_equal_each_example_alone(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ft.config.load import load_config
    from ft.data.pipeline import prepare_data

    rows = [{"instruction": f"Question {i}?", "output": "yes " * (i + 1)} for i in range(6)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "c.yml"
    settings = {"base_model": str(tiny_model_dir), "datasets": [{"path": str(data), "type": "phi2"}]}
    config.write_text(yaml.safe_dump({**settings, "sequence_len": 256, "sample_packing": True}))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    packed = prepare_data(load_config(config), tokenizer).train
    row = max(packed, key=lambda r: len(r["seq_lengths"]))
    assert len(row["seq_lengths"]) >= 3

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([row])
    with torch.no_grad():
        # As trl's SFTTrainer.compute_loss calls the model: every collator key, no cache. (With a
        # cache, transformers would not look for packed sequences in position_ids.)
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        together = model(**inputs, use_cache=False).logits[0]
        start = 0
        for length in row["seq_lengths"]:
            alone = model(input_ids=torch.tensor([row["input_ids"][start : start + length]])).logits[0]
            assert torch.allclose(together[start : start + length], alone, atol=1e-5), start
            start += length
    expected = torch.tensor(row["labels"])
    assert torch.equal(batch["labels"][0], expected)  # the first label of each example is already -100


def test_packed_rows_collator_keeps_rows_apart_and_examples_apart(tmp_path, tiny_model_dir):
    """ft's collator for non-varlen kernels: rows side by side (padded at the end), position ids
    restarting per example; logits of each example equal its logits alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from ft.data.packing import PackedRowsCollator

    rows = [
        {"input_ids": [1, 5, 6, 7, 1, 8, 9], "labels": [-100, 5, 6, 7, -100, 8, 9], "seq_lengths": [4, 3]},
        {"input_ids": [1, 10, 11], "labels": [-100, 10, 11], "seq_lengths": [3]},
    ]
    batch = PackedRowsCollator(pad_token_id=0)(rows)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3]]
    assert batch["labels"][1].tolist() == [-100, 10, 11, -100, -100, -100, -100]
    assert "attention_mask" not in batch
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    with torch.no_grad():
        together = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        for row, (start, length) in [(0, (0, 4)), (0, (4, 3)), (1, (0, 3))]:
            alone = model(input_ids=torch.tensor([rows[row]["input_ids"][start : start + length]])).logits[0]
            assert torch.allclose(together[row, start : start + length], alone, atol=1e-5)
