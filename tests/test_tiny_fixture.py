from __future__ import annotations


def test_tiny_tokenizer_adds_bos_and_knows_phi_tokens(tiny_tokenizer) -> None:
    ids = tiny_tokenizer("Hello")["input_ids"]
    assert ids[0] == tiny_tokenizer.bos_token_id
    end_id = tiny_tokenizer.convert_tokens_to_ids("<|end|>")
    assert tiny_tokenizer("<|end|>", add_special_tokens=False)["input_ids"] == [end_id]
    assert tiny_tokenizer.pad_token is None
