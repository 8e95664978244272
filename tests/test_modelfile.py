"""The Ollama TEMPLATE is read off the chat template ft saves: for every training format, the
wrappers it finds render five conversations exactly as the chat template does (system prompt or
not, one turn or several), the default system prompt becomes SYSTEM, and BOS is left to llama.cpp."""

from __future__ import annotations

from typing import Any

import pytest

from ft.config.formats import CHAT_TEMPLATES
from ft.export.modelfile import (
    CHECK_CONVERSATIONS,
    build_modelfile,
    check_wrappers,
    derive_wrappers,
    go_literal,
    go_template,
    render_wrapped,
)

pytestmark = pytest.mark.integration  # the tiny tokenizer fixture

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def with_format(tokenizer: Any, name: str) -> Any:
    from ft.config.schema import FtConfig
    from ft.data.chat_templates import chat_template_jinja

    cfg = FtConfig.model_validate(
        {
            "base_model": "org/model",
            "datasets": [{"path": "d.jsonl", "type": "chat_template", "chat_template": name}],
        }
    )
    copy = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    copy.chat_template = chat_template_jinja(cfg, copy)
    return copy


@pytest.mark.parametrize("name", ["alpaca", "llama2_chat", "phi2", "phi3"])
def test_every_format_is_expressed(tiny_tokenizer: Any, name: str) -> None:
    tokenizer = with_format(tiny_tokenizer, name)
    wrappers = derive_wrappers(tokenizer, tokenizer.bos_token)
    assert wrappers is not None
    assert check_wrappers(tokenizer, wrappers, tokenizer.bos_token) is None
    for turns in CHECK_CONVERSATIONS:
        rows = [{"role": r, "content": c} for r, c in turns]
        text = tokenizer.apply_chat_template(rows, tokenize=False, add_generation_prompt=True)
        if turns[0][0] != "system" and wrappers.default_system is not None:
            turns = (("system", wrappers.default_system), *turns)
        # the tiny tokenizer adds BOS itself (as llama.cpp will), so the template leaves the leading one out
        assert tokenizer.bos_token + render_wrapped(wrappers, turns) == text


def test_llama2_system_goes_inside_the_first_instruction(tiny_tokenizer: Any) -> None:
    tokenizer = with_format(tiny_tokenizer, "llama2_chat")
    wrappers = derive_wrappers(tokenizer, tokenizer.bos_token)
    assert wrappers is not None
    assert wrappers.system_prefix == "[INST] <<SYS>>\n"
    assert wrappers.system_suffix == "\n<</SYS>>\n\n" and wrappers.user_suffix == " [/INST]"
    assert wrappers.assistant_suffix == f" {tokenizer.eos_token}{tokenizer.bos_token}[INST] "
    assert wrappers.default_system is None


def test_chatml_template_and_modelfile(tiny_tokenizer: Any) -> None:
    tokenizer = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tokenizer.chat_template = CHATML
    modelfile = build_modelfile("m.gguf", tokenizer, ["<|im_end|>", "</s>"], None, None)
    assert modelfile.note is None
    assert modelfile.system == "You are a helpful AI assistant."
    assert modelfile.template == (
        '{{- range $i, $m := .Messages }}{{ if eq $m.Role "system" }}<|im_start|>system\n'
        "{{ $m.Content }}"
        '{{ else if eq $m.Role "user" }}{{ if eq $i 0 }}<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n'
        "<|im_start|>user\n{{ else }}<|im_end|>\n<|im_start|>user\n{{ end }}{{ $m.Content }}<|im_end|>\n"
        "<|im_start|>assistant\n{{ else }}{{ $m.Content }}{{ end }}{{ end }}"
    )
    assert modelfile.text.splitlines()[-2:] == ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "</s>"']


def test_a_template_of_another_shape_gets_no_template(tiny_tokenizer: Any) -> None:
    """A template that numbers the turns cannot be written as per-role wrappers: said, not guessed."""
    tokenizer = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tokenizer.chat_template = "{% for m in messages %}{{ loop.index }}. {{ m['content'] }}\n{% endfor %}"
    modelfile = build_modelfile("m.gguf", tokenizer, ["</s>"], "Be brief.", None)
    assert modelfile.template is None and modelfile.note
    assert "TEMPLATE" not in modelfile.text and 'SYSTEM """Be brief."""' in modelfile.text


def test_go_literal_quotes_braces() -> None:
    assert go_literal("plain\ntext") == "plain\ntext"
    assert go_literal("a {{b}} c") == '{{ "a {{b}} c" }}'


# Named templates whose shape Ollama's per-message TEMPLATE cannot express, with why (the rest get one).
NO_OLLAMA_TEMPLATE = {
    "gemma": "refuses a conversation Ollama may send (System role not supported)",
    "inst": "refuses a conversation Ollama may send (Conversation roles must alternate",
    "gemma4": "no per-message shape",
    "gemma4_unified": "no per-message shape",
    "mistral_v2v3": "no per-message shape",
    "mistral_v3_tekken": "no per-message shape",
    "pixtral": "no per-message shape",
    "qwen3": "no per-message shape",
    "qwen3_5": "no per-message shape",
}


@pytest.mark.parametrize("name", [n for n in CHAT_TEMPLATES if n not in ("tokenizer_default", "jinja")])
def test_every_named_chat_template_gets_a_checked_template_or_a_reason(
    tiny_tokenizer: Any, name: str
) -> None:
    """axolotl's named templates (saved with the run's tokenizer): the Modelfile's TEMPLATE renders
    the check conversations as the template does, or there is none and the note says why."""
    tokenizer = with_format(tiny_tokenizer, name)
    modelfile = build_modelfile("m.gguf", tokenizer, ["</s>"], None, tokenizer.bos_token)
    if name in NO_OLLAMA_TEMPLATE:
        assert modelfile.template is None and NO_OLLAMA_TEMPLATE[name] in (modelfile.note or "")
        assert "TEMPLATE" not in modelfile.text
        return
    assert modelfile.note is None and modelfile.template is not None
    wrappers = derive_wrappers(tokenizer, tokenizer.bos_token)
    assert wrappers is not None and go_template(wrappers) == modelfile.template
    for turns in CHECK_CONVERSATIONS:
        rows = [{"role": r, "content": c} for r, c in turns]
        text = tokenizer.apply_chat_template(rows, tokenize=False, add_generation_prompt=True)
        if turns[0][0] != "system" and wrappers.default_system is not None:
            turns = (("system", wrappers.default_system), *turns)
        assert text.removeprefix(tokenizer.bos_token) == render_wrapped(wrappers, turns)
