"""Jinja chat templates for the saved tokenizer: plain transformers (`apply_chat_template`) then
renders exactly the text ft trained on. A test renders every format both ways and compares text
and token ids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ft.data.prompts import ALPACA_PREAMBLE, TokenizerTemplate, renderer_for_config, special_tokens_of

if TYPE_CHECKING:
    from ft.config.schema import FtConfig


_ROLE_CHECK = (
    "{%- set ns = namespace(system=none, start=0) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set ns.system = messages[0]['content'] -%}{%- set ns.start = 1 -%}{%- endif -%}"
)

_JINJA = {
    "alpaca": (
        "{{- BOS -}}"
        "{%- for m in messages[ns.start:] -%}"
        "{%- if m['role'] == 'user' -%}"
        "{%- if loop.first -%}{{- (ns.system if ns.system is not none else '"
        + ALPACA_PREAMBLE
        + "') + '\\n\\n' -}}{%- endif -%}"
        "{{- '### Instruction:\\n' + m['content'] + '\\n\\n### Response:\\n' -}}"
        "{%- else -%}{{- m['content'] + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    ),
    "llama2_chat": (
        "{%- for m in messages[ns.start:] -%}"
        "{%- if m['role'] == 'user' -%}"
        "{%- if loop.first and ns.system is not none and ns.system | trim -%}"
        "{{- bos_token + '[INST] <<SYS>>\\n' + ns.system | trim + '\\n<</SYS>>\\n\\n' + m['content'] | trim + ' [/INST]' -}}"
        "{%- else -%}{{- bos_token + '[INST] ' + m['content'] | trim + ' [/INST]' -}}{%- endif -%}"
        "{%- else -%}{{- ' ' + m['content'] | trim + ' ' + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    ),
    "phi2": (
        "{{- BOS -}}"
        "{%- for m in messages[ns.start:] -%}"
        "{%- if m['role'] == 'user' -%}"
        "{%- if loop.first and ns.system -%}{{- ns.system + '\\n' -}}{%- endif -%}"
        "{{- 'Instruct: ' + m['content'] + '\\nOutput:' -}}"
        "{%- else -%}{{- ' ' + m['content'] + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    ),
    "phi3": (
        "{{- BOS -}}"
        "{%- if ns.system -%}{{- '<|system|>\\n' + ns.system + '<|end|>\\n' -}}{%- endif -%}"
        "{%- for m in messages[ns.start:] -%}"
        "{%- if m['role'] == 'user' -%}{{- '<|user|>\\n' + m['content'] + '<|end|>\\n<|assistant|>\\n' -}}"
        "{%- else -%}{{- m['content'] + '<|end|>\\n' -}}{%- endif -%}"
        "{%- endfor -%}"
    ),
}


def chat_template_jinja(cfg: FtConfig, tokenizer: Any) -> str | None:
    """A Jinja chat template that renders the training format, for the saved tokenizer.

    Our formats put the generation prompt inside the user turn, so `add_generation_prompt` adds
    nothing. None for custom and completion formats (no turns to template); the tokenizer's own
    template for tokenizer_default.
    """
    renderer = renderer_for_config(cfg, tokenizer)
    if isinstance(renderer, TokenizerTemplate):
        return str(tokenizer.chat_template)
    body = _JINJA.get(renderer.name)
    if body is None:
        return getattr(tokenizer, "chat_template", None)
    bos = "{{- bos_token -}}" if special_tokens_of(tokenizer).adds_bos else ""
    return _ROLE_CHECK + body.replace("{{- BOS -}}", bos)
