"""Builders for the fast test models: a byte-level BPE tokenizer trained on a few sentences and a
tiny random-initialised Llama-style model. Deterministic, offline, a few hundred milliseconds.

Used by the fixtures in conftest.py and by bench/ scripts.
"""

from __future__ import annotations

from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
PHI_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CORPUS = [
    "Below is an instruction that describes a task, paired with an input that provides further context.",
    "Write a response that appropriately completes the request.",
    "### Instruction:\n### Input:\n### Response:\n",
    "[INST] <<SYS>>\n<</SYS>>\n\n [/INST] Instruct: Output: ",
    "The quick brown fox jumps over the lazy dog. What is the capital of France? Paris.",
    "Hello! How are you today? I am fine, thank you. Translate to French: good morning -> bonjour.",
    "Give three tips for staying healthy. Eat well, sleep, exercise. 0123456789 + - * / = ( ) { } [ ] .",
    "You are a helpful assistant. Summarize the following text in one sentence.",
]


def build_tokenizer(vocab_size: int = 400):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [BOS, EOS, UNK, *PHI_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama's tokenizer: BOS added in front of every encoded text.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=PHI_TOKENS,
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )


def build_model(
    tokenizer,
    seed: int = 0,
    *,
    hidden: int = 64,
    intermediate: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
):  # -> LlamaForCausalLM
    """The tiny test model by default; bench scripts pass larger sizes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    sizes = llama_like_config(tokenizer, hidden, intermediate, layers, heads, kv_heads)
    return LlamaForCausalLM(LlamaConfig(**sizes)).to(torch.float32)


def llama_like_config(
    tokenizer, hidden: int = 64, intermediate: int = 128, layers: int = 2, heads: int = 4, kv_heads: int = 2
) -> dict:
    """The tiny model's config fields, which Llama-style architectures (Mistral, Qwen2) share."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A tiny model and its tokenizer saved as a local model folder (safetensors)."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
