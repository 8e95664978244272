"""Jinja chat templates for the saved tokenizer: plain transformers (`apply_chat_template`) then
renders exactly the text ft trained on. A test renders every format both ways and compares text
and token ids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ft.data.instruct import InstructionType
from ft.data.jinja import JinjaTemplate
from ft.data.prompts import ALPACA_PREAMBLE, special_tokens_of
from ft.data.renderers import renderer_for_config

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
    if isinstance(renderer, JinjaTemplate):
        return renderer.source
    bos = "{{- bos_token -}}" if special_tokens_of(tokenizer).adds_bos else ""
    if isinstance(renderer, InstructionType):
        return _ROLE_CHECK + instruction_jinja(renderer).replace("{{- BOS -}}", bos)
    body = _JINJA.get(renderer.name)
    if body is None:
        return getattr(tokenizer, "chat_template", None)
    return _ROLE_CHECK + body.replace("{{- BOS -}}", bos)


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _jinja_format(template: str, values: dict[str, str]) -> str:
    """A Python format string (`USER: {instruction}\\nASSISTANT:`) as a Jinja expression."""
    import string

    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(_literal(literal))
        if name is not None:
            parts.append(values[name])
    return " + ".join(parts) or "''"


def instruction_jinja(kind: InstructionType) -> str:
    """A Jinja template rendering an instruction type as ft's chat and generate render it: each user
    turn an instruction without input, the system prompt (or the type's preamble) first."""
    prompter = kind.prompter
    system = "(ns.system if ns.system is not none else '')"
    if not prompter.system_from_row:
        system = f"(ns.system if ns.system is not none else {_literal(prompter.system_no_input)})"
    head = _jinja_format(prompter.system_format, {"system": system}) if prompter.system_format else "''"
    first = _jinja_format(
        prompter.turn_no_input, {"instruction": "m['content']", "system": "(ns.system or '')"}
    )
    later = _jinja_format(prompter.turn_no_input, {"instruction": "m['content']", "system": "''"})
    return (
        "{{- BOS -}}"
        "{%- for m in messages[ns.start:] -%}"
        "{%- if m['role'] == 'user' -%}"
        f"{{%- if loop.first -%}}{{%- if {system} -%}}{{{{- {head} -}}}}{{%- endif -%}}{{{{- {first} -}}}}"
        f"{{%- else -%}}{{{{- {later} -}}}}{{%- endif -%}}"
        "{%- else -%}{{- m['content'] + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    )
