"""An Ollama Modelfile whose TEMPLATE renders the training format.

Ollama writes prompts with Go templates, not Jinja. Rather than translate Jinja, the Go template is
read off the model's own chat template (the one ft saved, which renders the training format): a
few conversations are rendered with marker strings in place of the contents, and the text around
the markers gives what each role's message is wrapped in, the text before a first user turn, and
a default system prompt when the template writes one for conversations without any (SmolLM2's
"You are a helpful AI assistant named SmolLM..." or alpaca's preamble; it becomes `SYSTEM`, which
Ollama sends as a system message). The pieces are checked by rendering five more conversations
both ways; a template that does not fit this shape, or refuses one of those conversations (one
without a system role, like gemma's), gets no TEMPLATE, and the reason is reported.

BOS: llama.cpp and Ollama put BOS in front of the prompt themselves when the GGUF says so
(`tokenizer.ggml.add_bos_token`), so a leading BOS is left out of the template.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARK = "ftmark"
"""Marker contents: plain letters, so templates that strip or trim contents leave them alone."""


@dataclass(frozen=True)
class RoleWrappers:
    system_prefix: str
    system_suffix: str
    first_user_prefix: str
    """Before the first user turn of a conversation without a system message."""
    user_prefix: str
    user_suffix: str
    """After a user turn; holds the generation prompt (the assistant header)."""
    assistant_prefix: str
    assistant_suffix: str
    default_system: str | None


@dataclass(frozen=True)
class Modelfile:
    text: str
    template: str | None
    system: str | None
    stop: list[str]
    note: str | None
    """Why there is no TEMPLATE, when there is none."""


Turn = tuple[str, str]


def _render(tokenizer: Any, turns: Sequence[Turn], bos: str | None) -> str:
    rows = [{"role": role, "content": content} for role, content in turns]
    text = str(tokenizer.apply_chat_template(rows, tokenize=False, add_generation_prompt=True))
    return text[len(bos) :] if bos and text.startswith(bos) else text


def _between(text: str, markers: Sequence[str]) -> list[str] | None:
    """The text before, between and after the markers, in order; None if one is missing."""
    pieces, position = [], 0
    for marker in markers:
        found = text.find(marker, position)
        if found < 0:
            return None
        pieces.append(text[position:found])
        position = found + len(marker)
    pieces.append(text[position:])
    return pieces


def _common_suffix(a: str, b: str) -> str:
    size = 0
    while size < min(len(a), len(b)) and a[-1 - size] == b[-1 - size]:
        size += 1
    return a[len(a) - size :]


def derive_wrappers(tokenizer: Any, bos: str | None) -> RoleWrappers | None:
    """The wrappers of each role, read off renders of marker conversations (None: no such shape)."""
    s, u1, a1, u2 = (f"{MARK}{name}" for name in ("system", "userone", "answerone", "usertwo"))
    full = _between(
        _render(tokenizer, [("system", s), ("user", u1), ("assistant", a1), ("user", u2)], bos),
        [s, u1, a1, u2],
    )
    alone = _between(_render(tokenizer, [("user", u1)], bos), [u1])
    if full is None or alone is None:
        return None
    head, system_to_user, user_to_answer, answer_to_user, tail = full
    user_prefix = _common_suffix(system_to_user, answer_to_user)
    if not user_to_answer.startswith(tail):
        return None
    first = alone[0]
    default = None
    if (
        first.startswith(head)
        and first.endswith(system_to_user)
        and len(first) > len(head) + len(system_to_user)
    ):
        default = first[len(head) : len(first) - len(system_to_user)]
    return RoleWrappers(
        system_prefix=head,
        system_suffix=system_to_user[: len(system_to_user) - len(user_prefix)],
        first_user_prefix=first,
        user_prefix=user_prefix,
        user_suffix=tail,
        assistant_prefix=user_to_answer[len(tail) :],
        assistant_suffix=answer_to_user[: len(answer_to_user) - len(user_prefix)],
        default_system=default,
    )


def render_wrapped(wrappers: RoleWrappers, turns: Sequence[Turn]) -> str:
    """What the Go template of `go_template` renders for these messages (the same structure)."""
    out = []
    for index, (role, content) in enumerate(turns):
        if role == "system":
            out.append(wrappers.system_prefix + content + wrappers.system_suffix)
        elif role == "user":
            prefix = wrappers.first_user_prefix if index == 0 else wrappers.user_prefix
            out.append(prefix + content + wrappers.user_suffix)
        else:
            out.append(wrappers.assistant_prefix + content + wrappers.assistant_suffix)
    return "".join(out)


CHECK_CONVERSATIONS: tuple[tuple[Turn, ...], ...] = (
    (("user", "What is 2+2?"),),
    (("system", "Be brief."), ("user", "What is 2+2?")),
    (("user", "Hi"), ("assistant", "Hello."), ("user", "Date of 5 Mar 1971?")),
    (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")),
    (("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")),
)


def check_wrappers(tokenizer: Any, wrappers: RoleWrappers, bos: str | None) -> str | None:
    """None when the wrappers render every check conversation as the chat template does."""
    for turns in CHECK_CONVERSATIONS:
        expected = _render(tokenizer, turns, bos)
        if turns[0][0] != "system" and wrappers.default_system is not None:
            turns = (("system", wrappers.default_system), *turns)  # what Ollama sends with SYSTEM set
        if render_wrapped(wrappers, turns) != expected:
            return "the chat template does not wrap each message the same way in every conversation"
    return None


def go_literal(text: str) -> str:
    """Literal text in a Go template; `{{` would open an action, so such text goes in quotes."""
    return text if "{{" not in text and "}}" not in text else "{{ " + json.dumps(text) + " }}"


def go_template(w: RoleWrappers) -> str:
    q = go_literal
    return (
        '{{- range $i, $m := .Messages }}{{ if eq $m.Role "system" }}'
        f"{q(w.system_prefix)}{{{{ $m.Content }}}}{q(w.system_suffix)}"
        '{{ else if eq $m.Role "user" }}'
        f"{{{{ if eq $i 0 }}}}{q(w.first_user_prefix)}{{{{ else }}}}{q(w.user_prefix)}{{{{ end }}}}"
        f"{{{{ $m.Content }}}}{q(w.user_suffix)}"
        f"{{{{ else }}}}{q(w.assistant_prefix)}{{{{ $m.Content }}}}{q(w.assistant_suffix)}"
        "{{ end }}{{ end }}"
    )


def quoted(text: str) -> str:
    """A Modelfile value: triple quotes allow newlines, and no value here holds three quotes."""
    return '"""' + text + '"""'


def build_modelfile(
    gguf_name: str, tokenizer: Any, stop: Sequence[str], system: str | None, bos: str | None
) -> Modelfile:
    """The Modelfile text for the GGUF file `gguf_name` (a path relative to the Modelfile)."""
    note = None
    template = None
    default_system = None
    if not getattr(tokenizer, "chat_template", None):
        template, note = "{{ .Prompt }}", "the model has no chat template: prompts are sent as they are"
    else:
        from jinja2 import TemplateError

        try:
            wrappers = derive_wrappers(tokenizer, bos)
            note = (
                "the chat template has no per-message shape Ollama can express" if wrappers is None else None
            )
            if wrappers is not None:
                note = check_wrappers(tokenizer, wrappers, bos)
                if note is None:
                    template, default_system = go_template(wrappers), wrappers.default_system
        except TemplateError as err:
            # gemma's and inst's templates raise on a system message, which Ollama may send.
            note = f"the chat template refuses a conversation Ollama may send ({err})"
    system = system or default_system
    lines = [f"FROM ./{gguf_name}"]
    if template is not None and '"""' not in template:
        lines.append(f"TEMPLATE {quoted(template)}")
    if system and '"""' not in system:
        lines.append(f"SYSTEM {quoted(system)}")
    lines += [f"PARAMETER stop {json.dumps(token)}" for token in dict.fromkeys(stop)]
    return Modelfile("\n".join(lines) + "\n", template, system, list(dict.fromkeys(stop)), note)
