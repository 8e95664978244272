"""Chat formats written as Jinja chat templates: axolotl's named templates, the tokenizer's own,
or a user's (`chat_template: jinja` with `chat_template_jinja`).

The text is the template's, rendered by transformers' `apply_chat_template` as axolotl renders it.
What is trained is found as axolotl finds it: each turn's content is located by rendering the
conversation again with that content replaced by two placeholders (the span that differs is the
content, wherever the template puts it), and the turn terminator is the first end-of-turn token
(`eot_tokens`; else the template's own one, else EOS) within three tokens after the content. An
assistant answer starts where the prompt that inference renders (`add_generation_prompt`) ends, so
text a template writes between the two (mistral's space after `[/INST]`) is trained as the answer's
first characters: the model learns to write what follows the prompt it will be given.
Which turns are trained is `roles_to_train`; which terminators, `train_on_eos` (turn, all, none,
last). ft's default end-of-turn token is the template's own terminator, found by rendering a probe
conversation: axolotl's default is EOS, so with a template whose turns end in another token
(ChatML's `<|im_end|>` on a tokenizer whose EOS is `</s>`) axolotl warns and trains no terminator,
and the model never learns to stop; ft trains it.

The templates in `templates/` are axolotl's (Apache-2.0, github.com/axolotl-ai-cloud/axolotl,
src/axolotl/utils/chat_templates/templates at v0.21.0; `inst` from v0.4.0), and the FastChat
conversation formats that axolotl's legacy `type: sharegpt` used (`conversation:`), written here
as Jinja and checked against FastChat's own strings in tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ft.base.errors import FtError
from ft.data.prompts import Message, RenderError, Segment, SpecialTokens

TEMPLATE_DIR = Path(__file__).with_name("templates")

SENTINELS = ("[[dummy_message]]", "zzdummymessagezz")
"""Two placeholders with different first and last characters (axolotl's): a template may glue a
shared edge character onto one of them; the union of both spans is the content's span."""

TERMINATOR_GAP_TOKENS = 3
"""axolotl looks for a turn's terminator at most three tokens after its content."""

KNOWN_TERMINATORS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eot|>",
    "<end_of_turn>",
    "<|end|>",
    "<|END_OF_TURN_TOKEN|>",
    "[|endofturn|]",
    "<turn|>",
    "<|end_of_text|>",
    "<|endoftext|>",
)
"""End-of-turn strings of common templates, looked for when the tokenizer does not know them."""

TRAIN_ON_EOS = ("turn", "all", "none", "last")


@cache
def template_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in TEMPLATE_DIR.glob("*.jinja")))


@cache
def named_template(name: str) -> str:
    path = TEMPLATE_DIR / f"{name}.jinja"
    if not path.is_file():
        raise FtError(f"unknown chat template {name!r}", hint="one of: " + ", ".join(template_names()))
    return path.read_text(encoding="utf-8")


def read_jinja(text_or_path: str) -> str:
    """A Jinja template given as text or as the path of a .jinja file (axolotl accepts both)."""
    candidate = Path(text_or_path).expanduser()
    if "{" not in text_or_path and candidate.suffix == ".jinja":
        try:
            return candidate.read_text(encoding="utf-8")
        except OSError as err:
            raise FtError(f"chat_template_jinja: cannot read {text_or_path}: {err.strerror}") from err
    return text_or_path


class JinjaTemplate:
    """A chat format rendered by a Jinja chat template."""

    def __init__(
        self,
        name: str,
        source: str,
        tokenizer: Any,
        *,
        roles_to_train: Sequence[str] = ("assistant",),
        train_on_eos: str = "turn",
        eot_tokens: Sequence[str] | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.tokenizer = tokenizer
        self.roles_to_train = tuple(roles_to_train)
        self.train_on_eos = train_on_eos
        self.template_kwargs = dict(template_kwargs or {})
        self._eot_tokens = tuple(eot_tokens) if eot_tokens else None
        self._detected: dict[str, tuple[str, ...]] = {}
        """The terminator found by rendering a probe, per EOS (found once, not per row)."""

    # ----------------------------------------------------------------------------------------
    # Rendering

    def text(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
        rows = [{"role": m.role, "content": m.content} for m in messages]
        try:
            text = self.tokenizer.apply_chat_template(
                rows,
                chat_template=self.source,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                **self.template_kwargs,
            )
        except Exception as err:  # Jinja raises its own errors (raise_exception in templates)
            raise RenderError(f"the {self.name} chat template failed: {err}") from err
        return str(text)

    def render(
        self, messages: Sequence[Message], tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        if add_generation_prompt:
            return [Segment(self.text(messages, add_generation_prompt=True))]
        full = self.text(messages)
        eots = self.eot_tokens(tokens)
        marks: list[tuple[int, int, bool]] = []  # (start, end, trained) spans of the text
        last_eot: tuple[int, int] | None = None
        for index, message in enumerate(messages):
            train = message.role in self.roles_to_train
            if not train and self.train_on_eos != "all":
                continue
            start, end = self._content_span(messages, index, full)
            if start >= end:
                continue
            if train:
                marks.append((self._answer_start(messages, index, full, start), end, True))
            eot = self._terminator_after(full, end, eots)
            if eot is None:
                continue
            last_eot = eot
            if self.train_on_eos == "all" or (self.train_on_eos == "turn" and train):
                marks.append((*eot, True))
        if self.train_on_eos == "last" and last_eot is not None:
            marks.append((*last_eot, True))
        return _segments(full, marks)

    def _content_span(self, messages: Sequence[Message], index: int, full: str) -> tuple[int, int]:
        spans = []
        for sentinel in SENTINELS:
            dummy = [*messages[:index], Message(messages[index].role, sentinel), *messages[index + 1 :]]
            spans.append(_diff_span(full, self.text(dummy)))
        return min(s for s, _ in spans), max(e for _, e in spans)

    def _answer_start(self, messages: Sequence[Message], index: int, full: str, content_start: int) -> int:
        """Where an assistant's answer starts: where the prompt that inference renders for it ends.

        A template may write text between its generation prompt and the content (mistral's
        `[/INST]` then `' ' + content`): that text is the answer's, as the model must write it after
        the prompt it will be given. Where the generation prompt is not a prefix of the training
        text (a template that moves the system prompt into the last user turn), the content's start,
        spaces written just before it included, as ft's own formats do.
        """
        if messages[index].role != "assistant":
            return content_start
        prompt = self.text(messages[:index], add_generation_prompt=True)
        if full.startswith(prompt) and len(prompt) <= content_start:
            return len(prompt)
        return len(full[:content_start].rstrip(" "))

    def _terminator_after(self, full: str, end: int, eots: Sequence[str]) -> tuple[int, int] | None:
        found = [(full.find(eot, end), eot) for eot in eots]
        found = [(at, eot) for at, eot in found if at >= 0]
        if not found:
            return None
        at, eot = min(found)
        gap = full[end:at]
        if gap and len(self.tokenizer(gap, add_special_tokens=False)["input_ids"]) > TERMINATOR_GAP_TOKENS:
            return None
        return at, at + len(eot)

    # ----------------------------------------------------------------------------------------
    # The turn terminator

    def eot_tokens(self, tokens: SpecialTokens) -> tuple[str, ...]:
        """`eot_tokens` when given, else the template's own terminator, else EOS."""
        if self._eot_tokens:
            return self._eot_tokens
        if tokens.eos not in self._detected:
            found = detect_terminator(self, tokens)
            self._detected[tokens.eos] = (found,) if found else (tokens.eos,)
        return self._detected[tokens.eos]

    def terminator(self, tokens: SpecialTokens) -> str:
        return self.eot_tokens(tokens)[0]


def detect_terminator(fmt: JinjaTemplate, tokens: SpecialTokens) -> str | None:
    """The special token a template writes right after an assistant's content, found by rendering
    a probe conversation: the first of the tokenizer's special tokens, the common end-of-turn
    strings and EOS after the answer."""
    probe = [Message("user", "Q1"), Message("assistant", "A2")]
    try:
        text = fmt.text(probe)
    except RenderError:
        return None
    after = text.find("A2")
    if after < 0:
        return None
    rest = text[after + 2 :]
    specials = set(getattr(fmt.tokenizer, "all_special_tokens", ()) or ())
    candidates = {t for t in (*specials, *KNOWN_TERMINATORS, tokens.eos) if t and t != tokens.bos}
    hits = [(rest.find(c), -len(c), c) for c in candidates if 0 <= rest.find(c) <= 16]
    return min(hits)[2] if hits else None


def check_terminator(fmt: JinjaTemplate, tokens: SpecialTokens) -> None:
    """The terminator must be one token, or the model could not learn to stop (axolotl refuses too)."""
    for eot in fmt.eot_tokens(tokens):
        ids = fmt.tokenizer(eot, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise FtError(
                f"the {fmt.name} chat template ends turns with {eot!r}, which this tokenizer splits into "
                f"{len(ids)} tokens, so the model could not learn to stop",
                hint=f"add it: tokens: [{eot!r}] (with lora_modules_to_save: [embed_tokens, lm_head]), "
                "or set eot_tokens",
            )


def _diff_span(full: str, dummy: str) -> tuple[int, int]:
    """The span of `full` that differs from `dummy` (common prefix and suffix removed)."""
    limit = min(len(full), len(dummy))
    start = 0
    while start < limit and full[start] == dummy[start]:
        start += 1
    suffix = 0
    while suffix < limit - start and full[-1 - suffix] == dummy[-1 - suffix]:
        suffix += 1
    return start, len(full) - suffix


def _segments(text: str, marks: list[tuple[int, int, bool]]) -> list[Segment]:
    """`text` cut into segments, trained where a mark says so (overlapping marks merged)."""
    trained = [False] * len(text)
    for start, end, _ in marks:
        trained[start:end] = [True] * (end - start)
    segments: list[Segment] = []
    start = 0
    for position in range(1, len(text) + 1):
        if position == len(text) or trained[position] != trained[start]:
            segments.append(Segment(text[start:position], trained=trained[start]))
            start = position
    return segments


class TokenizerTemplate(JinjaTemplate):
    """The tokenizer's own chat template (`chat_template: tokenizer_default`)."""

    def __init__(self, tokenizer: Any, **options: Any) -> None:
        source = getattr(tokenizer, "chat_template", None)
        if not source:
            raise FtError(
                "chat_template: tokenizer_default, but the tokenizer has no chat template",
                hint="name a template: chat_template: chatml | llama3 | ... (see docs/config.md)",
            )
        super().__init__("tokenizer_default", str(source), tokenizer, **options)
