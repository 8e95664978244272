"""The names of the dataset types and chat templates a config may give, and the rules of a custom
`format` string: what the schema checks. They render in `ft.data` (`prompts`, `instruct`, `jinja`,
`renderers`); a test keeps the names here in step with the renderers there.
"""

from __future__ import annotations

import string

from ft.config.rl import PAIR_TEMPLATES, PAIR_TYPE_FIELDS

FT_FORMATS = ("alpaca", "llama2_chat", "phi2", "phi3")
"""ft's own formats (ft.data.prompts)."""

_STYLED = ("jeopardy", "oasst", "gpteacher", "explainchoice", "concisechoice", "summarizetldr")
_STYLES = ("instruct", "chat", "chatml", "phi")

INSTRUCTION_TYPES = (
    *(f"alpaca:{style}" for style in _STYLES),
    *(name for base in _STYLED for name in (base, *(f"{base}:{style}" for style in _STYLES))),
    "alpaca_chat",
    "alpaca_chat.load_concise",
    "alpaca_chat.load_qa",
    "alpaca_chat.load_camel_ai",
    "alpaca_chat.load_no_prompt",
    "alpaca_instruct",
    "alpaca_instruct.load_no_prompt",
    "alpaca_w_system",
    "alpaca_w_system.load_chat",
    "alpaca_w_system.load_instruct",
    "alpaca_w_system.load_open_orca",
    "alpaca_w_system.load_open_orca_chatml",
    "context_qa",
    "context_qa.load_404",
    "context_qa.load_v2",
    "orcamini",
)
"""axolotl's instruction-style dataset types (`prompt:style` and `module.loader` forms), with
axolotl's exact strings (ft.data.instruct)."""

PROMPT_FORMATS = (*FT_FORMATS, "completion", "chat_template", "input_output", *INSTRUCTION_TYPES)
"""Dataset `type` values. A dataset may also give a custom `format` string instead."""

AXOLOTL_TEMPLATES = (
    "alpaca",
    "aya",
    "chatml",
    "cohere",
    "command_a",
    "command_a_rag",
    "command_a_tool_use",
    "deepseek_v2",
    "deepseek_v3",
    "exaone",
    "exaone4",
    "falcon_h1",
    "gemma",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4_unified",
    "inst",
    "jamba",
    "llama3",
    "llama3_2_vision",
    "llama4",
    "llava",
    "metharme",
    "mistral_v1",
    "mistral_v2v3",
    "mistral_v3_tekken",
    "mistral_v7_tekken",
    "nemotron_h",
    "phi_3",
    "phi_35",
    "phi_4",
    "pixtral",
    "qwen2_vl",
    "qwen3",
    "qwen3_5",
    "qwen_25",
)
"""Every chat template axolotl has named (v0.4.0's `inst` included), rendered from its Jinja text."""

FASTCHAT_TEMPLATES = ("vicuna_v1.1", "zephyr", "fastchat_mistral")
"""FastChat conversation formats of axolotl's legacy `type: sharegpt` (`conversation:`), as Jinja."""

CHAT_TEMPLATES = (
    *AXOLOTL_TEMPLATES,
    *FASTCHAT_TEMPLATES,
    "llama2_chat",
    "phi2",
    "phi3",
    "tokenizer_default",
    "jinja",
)
"""Templates that render chat `messages`: axolotl's, ft's (`alpaca` is axolotl's template here; the
dataset type `alpaca` is ft's Alpaca format), the tokenizer's own, or `jinja` (chat_template_jinja)."""

FALLBACK_PREFIX = "tokenizer_default_fallback_"
"""`tokenizer_default_fallback_chatml`: the tokenizer's own template, or chatml when it has none."""

# Legacy ShareGPT `conversation:` names (FastChat's): the template that renders them and the system
# prompt FastChat's template (as axolotl registered it) wrote when a row had none.
CONVERSATIONS: dict[str, tuple[str, str | None]] = {
    "chatml": ("chatml", "You are a helpful assistant."),
    "llama3": ("llama3", "You are a helpful assistant."),
    "llama-3": ("llama3", "You are a helpful assistant."),
    "llama-2": ("llama2_chat", None),
    "llama2": ("llama2_chat", None),
    "vicuna_v1.1": (
        "vicuna_v1.1",
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    ),
    "zephyr": ("zephyr", None),
    "mistral": ("fastchat_mistral", None),
}

PAIR_TYPES_READ = (
    f"with rl, ft reads {' and '.join(t + '.X' for t in PAIR_TEMPLATES)} for X in "
    f"{', '.join(PAIR_TYPE_FIELDS)}, and chat_template.default"
)

# axolotl dataset types ft refuses, by prefix: what they are.
UNSUPPORTED_TYPES: dict[str, str] = {
    "chat_template.": f"a preference-data type ft does not read ({PAIR_TYPES_READ})",
    "chatml.": f"a preference-data (DPO) type ft does not read ({PAIR_TYPES_READ})",
    "llama3.": f"a preference-data (DPO) type ft does not read ({PAIR_TYPES_READ})",
    "zephyr.": f"a preference-data (DPO) type ft does not read ({PAIR_TYPES_READ})",
    "user_defined.": f"a preference-data (DPO/KTO) type ft does not read ({PAIR_TYPES_READ})",
    "passthrough": f"a preference-data (DPO) type ft does not read ({PAIR_TYPES_READ})",
    "orpo.": f"a preference-data (ORPO) type ft does not read ({PAIR_TYPES_READ})",
    "kto.": "a preference-data (KTO) type",
    "bradley_terry": "a reward-model type",
    "stepwise_supervised": "a process reward-model type",
    "pretrain": "a streaming pretraining type",
    "ebft_": "an EBFT reinforcement fine-tuning type",
    "rwd.": "a reinforcement-learning type",
    "messages": "a chat type of axolotl's messages module; use type: chat_template",
    "reflection": "axolotl's reflection type (output, reflection, corrected); not available",
    "metharme": "axolotl's Metharme type; use type: chat_template with chat_template: metharme",
    "pygmalion": "axolotl's Pygmalion type; use type: chat_template",
    "creative_acr": "axolotl's creative-writing types; not available",
    "sharegpt_jokes": "not available; use type: chat_template",
    "nomicgpt4all": "not available; use type: alpaca with field_* mappings",
}

CUSTOM_FIELDS = frozenset({"instruction", "input", "system"})


def is_chat_template(name: str) -> bool:
    return name in CHAT_TEMPLATES or (
        name.startswith(FALLBACK_PREFIX) and name.removeprefix(FALLBACK_PREFIX) in CHAT_TEMPLATES
    )


def unsupported_type(name: str) -> str | None:
    """Why an axolotl dataset type is not available in ft, or None."""
    return next((why for prefix, why in UNSUPPORTED_TYPES.items() if name.startswith(prefix)), None)


def custom_format_problems(text: str) -> list[str]:
    """What is wrong with a custom format string (unknown or positional fields, bad braces)."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as err:
        return [f"{err} (write {{{{ and }}}} for literal braces)"]
    problems = []
    for field in fields:
        if field not in CUSTOM_FIELDS:
            problems.append(
                f"unknown field {{{field}}}: use " + ", ".join(f"{{{f}}}" for f in sorted(CUSTOM_FIELDS))
            )
    return problems
