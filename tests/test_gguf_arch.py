"""What ft computes for a GGUF file beside the weights: Llama 3.1's long-context rope factors."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ft.export.gguf_arch import llama3_rope_factors

LLAMA_32_1B = json.loads((Path(__file__).parent.parent / "bench" / "gpu" / "llama-3.2-1b.json").read_text())


def test_llama3_rope_factors_are_transformers_own_frequency_scaling() -> None:
    # llama.cpp divides each rope frequency by its factor; transformers scales the inverse
    # frequencies directly: the two must describe the same model.
    factors = llama3_rope_factors(LLAMA_32_1B)
    assert factors is not None and factors.dtype == "float32" and factors.shape == (32,)
    config = LlamaConfig(**LLAMA_32_1B)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
    plain = 1.0 / (500000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    torch.testing.assert_close(torch.from_numpy(factors), plain / scaled, rtol=1e-5, atol=0)
    # the short wavelengths unscaled, the long ones by the full factor, a smooth band between
    assert factors[0] == 1.0 and factors[-1] == 32.0
    assert any(1.0 < f < 32.0 for f in factors)


def test_other_rope_types_have_no_factors() -> None:
    assert llama3_rope_factors({**LLAMA_32_1B, "rope_scaling": None}) is None
