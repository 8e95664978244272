"""Which chat format renders what, from the config: a dataset's rows, and the conversations of
`ft chat` / `ft generate` (the same format, saved as the run's chat template).

- `type: chat_template`: the dataset's `chat_template`, else the config's, else the tokenizer's
  own. A template name is axolotl's (its Jinja text, `ft.data.jinja`), one of ft's formats
  (`llama2_chat`, `phi2`, `phi3`), `jinja` (the config's `chat_template_jinja`) or
  `tokenizer_default_fallback_<name>` (the tokenizer's own when it has one, else `<name>`);
- an instruction type (`alpaca`, `alpaca:chat`, `oasst`, ...): ft's format or axolotl's prompter;
- a custom `format`: the dataset's strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.data.instruct import INSTRUCTION_TYPES
from ft.data.jinja import JinjaTemplate, TokenizerTemplate, named_template, read_jinja, template_names
from ft.data.prompts import (
    FORMATS,
    ChatFormat,
    CustomFormat,
    EndsAtEos,
    Message,
    Segment,
    SpecialTokens,
    get_format,
    leading_bos,
)

if TYPE_CHECKING:
    from ft.config.schema import DatasetSettings, FtConfig

FALLBACK_PREFIX = "tokenizer_default_fallback_"
PLAIN_TEXT_TYPES = ("completion", "input_output")


def chat_template_name(cfg: FtConfig, dataset: DatasetSettings) -> str:
    """The template of a `type: chat_template` dataset: its own, else the config's, else the tokenizer's."""
    return dataset.chat_template or cfg.chat_template or "tokenizer_default"


def format_for_dataset(cfg: FtConfig, dataset: DatasetSettings, tokenizer: Any) -> ChatFormat:
    """The format that renders this dataset's rows."""
    if dataset.format:
        return CustomFormat(dataset.format, dataset.no_input_format, dataset.system_format)
    if dataset.type == "chat_template":
        return chat_template_format(
            cfg,
            chat_template_name(cfg, dataset),
            tokenizer,
            jinja=dataset.chat_template_jinja,
            roles_to_train=dataset.roles_to_train,
            train_on_eos=dataset.train_on_eos,
        )
    return format_for_type(dataset.type, tokenizer)


def format_for_type(name: str, tokenizer: Any) -> ChatFormat:
    """The format of a dataset type: ft's, axolotl's instruction prompter, or plain text."""
    if name in PLAIN_TEXT_TYPES:
        # Plain text has no turns: chat and generate render the prompt as it is, ending at EOS.
        return PlainText()
    if name in INSTRUCTION_TYPES:
        return INSTRUCTION_TYPES[name]
    return get_format(name)


def chat_template_format(
    cfg: FtConfig,
    name: str,
    tokenizer: Any,
    *,
    jinja: str | None = None,
    roles_to_train: list[str] | None = None,
    train_on_eos: str = "turn",
) -> ChatFormat:
    """A named chat template, with the dataset's training options and the config's terminators."""
    options: dict[str, Any] = {
        "roles_to_train": roles_to_train or ["assistant"],
        "train_on_eos": train_on_eos,
        "eot_tokens": cfg.eot_tokens,
        "template_kwargs": cfg.chat_template_kwargs,
    }
    if name.startswith(FALLBACK_PREFIX):
        if getattr(tokenizer, "chat_template", None):
            return TokenizerTemplate(tokenizer, **options)
        name = name.removeprefix(FALLBACK_PREFIX)
    if name == "tokenizer_default":
        return TokenizerTemplate(tokenizer, **options)
    if name == "jinja":
        source = jinja or cfg.chat_template_jinja
        if not source:
            raise FtError(
                "chat_template: jinja needs chat_template_jinja (the template text or a .jinja file)"
            )
        return JinjaTemplate("jinja", read_jinja(source), tokenizer, **options)
    if name in template_names():
        return JinjaTemplate(name, named_template(name), tokenizer, **options)
    if name in FORMATS:
        return get_format(name)
    raise FtError(
        f"unknown chat template {name!r}",
        hint="one of: " + ", ".join((*template_names(), *FORMATS, "tokenizer_default", "jinja")),
    )


def renderer_for_config(cfg: FtConfig, tokenizer: Any) -> ChatFormat:
    """The format used to talk to the trained model (and saved as its chat template): the top-level
    `chat_template` when set, else the format of the first dataset."""
    if cfg.chat_template:
        return chat_template_format(cfg, cfg.chat_template, tokenizer)
    return format_for_dataset(cfg, cfg.datasets[0], tokenizer)


@dataclass(frozen=True)
class PlainText(EndsAtEos):
    name: str = "completion"

    def render(
        self, messages: list[Message] | Any, tokens: SpecialTokens, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        text = "".join(m.content for m in messages if m.role == "user")
        return [*leading_bos(tokens), Segment(text)]
