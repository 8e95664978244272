"""Inference on a run folder or a merged model folder: loading, rendering, generation.

A run folder is rendered with the format it was trained on (`renderer_for_config` on its
config.yml, the run's own saved tokenizer), so the prompt given to the model is token for token
the prompt of a training example. A folder without ft metadata (a merged model, any model
folder) is rendered with its tokenizer's chat template: `ft train` saves a template that renders
the training format exactly, and `ft merge` copies that tokenizer.

Generation stops at EOS and at the format's terminator (phi-3's `<|end|>`), and the terminator
is never part of the returned text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.errors import FtError, ModelLoadError
from ft.examples import render_instruction
from ft.prompts import (
    PHI3_END,
    ChatFormat,
    Message,
    RenderError,
    Segment,
    SpecialTokens,
    TokenizerTemplate,
    format_by_name,
    renderer_for_config,
    special_tokens_of,
)
from ft.run import ADAPTER_CONFIG, CONFIG_YML, RUN_JSON, RunInfo, read_run

if TYPE_CHECKING:
    from ft.model import Precision
    from ft.schema import FtConfig

MERGE_JSON = "ft_merge.json"
"""Written by `ft merge` into a merged folder; read only for an optional `terminator`."""

TextCallback = Callable[[str], None]


@dataclass
class LoadedModel:
    """A model ready to generate, with everything needed to render prompts as trained."""

    model: Any
    tokenizer: Any
    chat_format: ChatFormat
    tokens: SpecialTokens
    terminator: str
    stop_ids: list[int]
    description: str
    """What was loaded, for the user (e.g. 'run folder: base + lora adapter, 4-bit')."""
    run: RunInfo | None = None
    has_adapter: bool = False
    precision: Precision | None = None

    @property
    def config(self) -> FtConfig | None:
        return self.run.config if self.run is not None else None


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; temperature 0 means greedy (deterministic)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        if self.temperature <= 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


# ---------------------------------------------------------------------------------------------
# Loading


def is_run_folder(path: Path) -> bool:
    return (path / RUN_JSON).is_file() and (path / CONFIG_YML).is_file()


def load_for_inference(path: Path) -> LoadedModel:
    """A run folder (base + adapter, or full weights) or a model folder (merged), ready to generate."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FtError(
            f"{path} is not a folder", hint="give a run folder (output_dir) or a merged model folder"
        )
    if is_run_folder(path):
        return load_run_folder(read_run(path))
    if (path / "config.json").is_file():
        return load_model_folder(path)
    raise FtError(
        f"{path} is neither an ft run folder (no {RUN_JSON}) nor a model folder (no config.json)",
        hint="give the output_dir of a finished ft train run, or a folder written by ft merge",
    )


def inference_precision(cfg: FtConfig | None) -> Precision:
    """float32 on a CPU whatever the run used (bfloat16 is 10-80x slower there, DESIGN.md); on a
    GPU the run's compute dtype, or bfloat16/float16 for a folder without a config."""
    import torch

    from ft.model import Precision, resolve_precision

    if not torch.cuda.is_available():
        return Precision("float32", bf16=False, fp16=False, use_cpu=True)
    if cfg is not None:
        return resolve_precision(cfg)
    if torch.cuda.is_bf16_supported():
        return Precision("bfloat16", bf16=True, fp16=False, use_cpu=False)
    return Precision("float16", bf16=False, fp16=True, use_cpu=False)


def load_run_folder(run: RunInfo) -> LoadedModel:
    """Base model (k-bit when the run was trained so) plus the run's adapter, or the run's full weights."""
    from ft.model import load_model_from_path
    from ft.train_settings import use_offline_mode_if_local

    cfg = run.config
    use_offline_mode_if_local(cfg)
    tokenizer = load_folder_tokenizer(run.run_dir)
    precision = inference_precision(cfg)
    bits = (run.data.get("quantization") or {}).get("bits")
    has_adapter = (run.run_dir / ADAPTER_CONFIG).is_file()
    # The adapter goes on the base as it was trained: k-bit when the run was (run.json's quantization).
    quantized = bits is not None and has_adapter
    if has_adapter:
        base = load_model_from_path(cfg, run.base_model_path, tokenizer, precision, quantize=quantized)
        model = attach_saved_adapter(base, run.run_dir)
        what = f"base + {run.adapter or 'lora'} adapter" + (f", {bits}-bit base" if quantized else "")
    else:
        # A full fine-tune (or a merged copy that kept the run's metadata): the weights are here.
        model = load_model_from_path(cfg, str(run.run_dir), tokenizer, precision, quantize=False)
        what = "full weights"
    chat_format = renderer_for_config(cfg, tokenizer)
    tokens = special_tokens_of(tokenizer)
    terminator = str(run.data.get("terminator") or chat_format.terminator(tokens))
    return LoadedModel(
        model=prepare_for_generation(model, quantized),
        tokenizer=tokenizer,
        chat_format=chat_format,
        tokens=tokens,
        terminator=terminator,
        stop_ids=stop_token_ids(tokenizer, terminator),
        description=f"run folder {run.run_dir}: {what}, {cfg.base_model}",
        run=run,
        has_adapter=has_adapter,
        precision=precision,
    )


def attach_saved_adapter(base: Any, run_dir: Path) -> Any:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, str(run_dir), is_trainable=False)
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{run_dir}: cannot load the adapter: {str(err).splitlines()[0]}") from err


def load_model_folder(path: Path) -> LoadedModel:
    """A plain model folder (a merged model): weights, tokenizer and its chat template."""
    from transformers import AutoModelForCausalLM

    from ft.model import torch_dtype

    tokenizer = load_folder_tokenizer(path)
    precision = inference_precision(None)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=torch_dtype(precision.compute_dtype), use_safetensors=True
        )
    except (OSError, ValueError, ImportError) as err:
        raise ModelLoadError(f"cannot load a model from {path}: {str(err).splitlines()[0]}") from err
    chat_format = folder_chat_format(tokenizer)
    tokens = special_tokens_of(tokenizer)
    terminator = folder_terminator(path, tokenizer, tokens)
    return LoadedModel(
        model=prepare_for_generation(model, quantized=False),
        tokenizer=tokenizer,
        chat_format=chat_format,
        tokens=tokens,
        terminator=terminator,
        stop_ids=stop_token_ids(tokenizer, terminator, generation_eos_ids(model)),
        description=f"model folder {path} (rendered with {_rendering(chat_format)})",
        precision=precision,
    )


def load_folder_tokenizer(path: Path) -> Any:
    """The tokenizer saved beside the weights: the one trained with (special tokens, pad, template)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot load its tokenizer: {str(err).splitlines()[0]}") from err


def folder_chat_format(tokenizer: Any) -> ChatFormat:
    """The tokenizer's chat template, or the prompt as it is when the folder has none."""
    if getattr(tokenizer, "chat_template", None):
        return TokenizerTemplate(tokenizer)
    return format_by_name("completion", tokenizer)


def folder_terminator(path: Path, tokenizer: Any, tokens: SpecialTokens) -> str:
    """ft_merge.json's terminator when it says one; `<|end|>` when the template writes it; else EOS."""
    merge_json = path / MERGE_JSON
    if merge_json.is_file():
        try:
            saved = json.loads(merge_json.read_text(encoding="utf-8")).get("terminator")
        except (OSError, ValueError, AttributeError):
            saved = None
        if isinstance(saved, str) and saved:
            return saved
    template = str(getattr(tokenizer, "chat_template", None) or "")
    if PHI3_END in template and PHI3_END in tokenizer.get_vocab():
        return PHI3_END
    return tokens.eos


def stop_token_ids(tokenizer: Any, terminator: str, extra: Sequence[int] = ()) -> list[int]:
    """EOS, the terminator's id (one token by construction of the formats) and `extra`, no repeats."""
    ids = [int(tokenizer.eos_token_id)]
    terminator_id = tokenizer.convert_tokens_to_ids(terminator)
    if isinstance(terminator_id, int) and terminator_id != tokenizer.unk_token_id:
        ids.append(terminator_id)
    ids += [int(token) for token in extra]
    return list(dict.fromkeys(ids))


def generation_eos_ids(model: Any) -> list[int]:
    """The EOS ids of the folder's generation_config.json (`ft merge` adds the terminator there)."""
    config = getattr(model, "generation_config", None)
    value = getattr(config, "eos_token_id", None)
    if value is None:
        return []
    return [value] if isinstance(value, int) else [int(v) for v in value]


def prepare_for_generation(model: Any, quantized: bool) -> Any:
    """Evaluation mode (no dropout) on the GPU when there is one (k-bit weights are placed at load)."""
    import torch

    model.eval()
    if torch.cuda.is_available() and not quantized:
        model.to("cuda")
    return model


# ---------------------------------------------------------------------------------------------
# Rendering


def render_prompt(loaded: LoadedModel, messages: Sequence[Message]) -> list[Segment]:
    """The generation prompt for a conversation ending with a user turn, as trained."""
    try:
        return loaded.chat_format.render(messages, loaded.tokens, add_generation_prompt=True)
    except RenderError as err:
        raise FtError(f"cannot render the conversation: {err}") from err


def row_messages(row: dict[str, Any], system: str | None = None) -> list[Message]:
    """The conversation of a {"prompt"} or {"messages"} input row.

    A trailing assistant turn in `messages` is the reference answer, not part of the prompt.
    """
    if "messages" in row:
        messages = [_message(turn) for turn in _list(row["messages"])]
        if messages and messages[-1].role == "assistant":
            messages = messages[:-1]
    elif "prompt" in row:
        messages = [Message("user", _str(row, "prompt"))]
    else:
        raise FtError(f"an input row needs prompt, messages or instruction (got: {', '.join(row) or 'none'})")
    system = row_system(row) or system
    if system and not (messages and messages[0].role == "system"):
        messages.insert(0, Message("system", system))
    return messages


def row_system(row: dict[str, Any]) -> str | None:
    value = row.get("system")
    return value if isinstance(value, str) and value else None


def render_row(loaded: LoadedModel, row: dict[str, Any], system: str | None = None) -> list[Segment]:
    """An input row's prompt, rendered as in training (instruction rows through ft.examples)."""
    if "instruction" not in row or "messages" in row or "prompt" in row:
        return render_prompt(loaded, row_messages(row, system))
    input_text = row.get("input")
    try:
        return render_instruction(
            loaded.chat_format,
            _str(row, "instruction"),
            input_text if isinstance(input_text, str) else "",
            row_system(row) or system,
            loaded.tokens,
        )
    except RenderError as err:
        raise FtError(f"cannot render the conversation: {err}") from err


def _message(turn: Any) -> Message:
    if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
        raise FtError(f"a message must be {{'role': system|user|assistant, 'content': ...}}, got {turn!r}")
    return Message(turn["role"], str(turn.get("content", "")))


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FtError("messages must be a list of {role, content} objects")
    return value


def _str(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise FtError(f"field {key!r} must be text, got {type(value).__name__}")
    return value


def prompt_ids(loaded: LoadedModel, segments: Sequence[Segment]) -> list[int]:
    """Token ids of rendered prompt segments, encoded exactly as training encodes them."""
    from ft.tokenizer import encode_segments

    return encode_segments(loaded.tokenizer, segments).input_ids


# ---------------------------------------------------------------------------------------------
# Generation


def generate(
    loaded: LoadedModel,
    segments: Sequence[Segment],
    settings: GenerationSettings,
    on_text: TextCallback | None = None,
) -> str:
    """The model's answer to a rendered prompt, cut at the first stop token, stripped."""
    return generate_from_ids(loaded.model, loaded, prompt_ids(loaded, segments), settings, on_text)


def generate_from_ids(
    model: Any,
    loaded: LoadedModel,
    ids: list[int],
    settings: GenerationSettings,
    on_text: TextCallback | None = None,
) -> str:
    """`generate` with an explicit model (the base model for comparisons) and prompt ids."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    streamer = text_streamer(loaded.tokenizer, loaded.stop_ids, on_text) if on_text else None
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=loaded.stop_ids,
            pad_token_id=loaded.tokenizer.pad_token_id
            if loaded.tokenizer.pad_token_id is not None
            else loaded.stop_ids[0],
            streamer=streamer,
            **settings.generate_kwargs(),
        )
    new_ids = output[0, len(ids) :].tolist()
    return decode_answer(loaded.tokenizer, new_ids, loaded.stop_ids)


def decode_answer(tokenizer: Any, new_ids: list[int], stop_ids: Sequence[int]) -> str:
    """The text before the first stop token; special tokens dropped, surrounding space stripped
    (formats such as llama2_chat train the answer as ' answer ')."""
    cut = next((i for i, token in enumerate(new_ids) if token in stop_ids), len(new_ids))
    return str(tokenizer.decode(new_ids[:cut], skip_special_tokens=True)).strip()


@dataclass
class _StreamState:
    ids: list[int] = field(default_factory=list)
    shown: int = 0
    stopped: bool = False
    prompt_seen: bool = False


def text_streamer(tokenizer: Any, stop_ids: Sequence[int], on_text: TextCallback) -> Any:
    """A transformers streamer that hands each new piece of decoded text to `on_text`.

    generate() first passes the prompt, then one token at a time. The whole answer is decoded
    each time and only the new suffix is passed on, so multi-token characters come out whole
    (text ending in U+FFFD is a partial UTF-8 character and waits). Nothing after a stop token.
    """
    from transformers.generation.streamers import BaseStreamer

    state = _StreamState()

    class CallbackStreamer(BaseStreamer):
        def put(self, value: Any) -> None:
            if not state.prompt_seen:
                state.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                if state.stopped or token in stop_ids:
                    state.stopped = True
                    return
                state.ids.append(int(token))
            self._flush(final=False)

        def end(self) -> None:
            self._flush(final=True)

        def _flush(self, final: bool) -> None:
            # The answer's leading space (llama2_chat, phi2 train ' answer') is not shown.
            text = str(tokenizer.decode(state.ids, skip_special_tokens=True)).lstrip()
            if not final and text.endswith("\ufffd"):
                return
            if len(text) > state.shown:
                on_text(text[state.shown :])
                state.shown = len(text)

    return CallbackStreamer()


# ---------------------------------------------------------------------------------------------
# Chat


@dataclass
class ChatSession:
    """A multi-turn conversation: each reply is generated from the whole history, rendered as trained."""

    loaded: LoadedModel
    settings: GenerationSettings
    system: str | None = None
    turns: list[Message] = field(default_factory=list)

    def messages(self, user_text: str) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return [*head, *self.turns, Message("user", user_text)]

    def reply(self, user_text: str, on_text: TextCallback | None = None) -> str:
        segments = render_prompt(self.loaded, self.messages(user_text))
        answer = generate(self.loaded, segments, self.settings, on_text)
        self.turns += [Message("user", user_text), Message("assistant", answer)]
        return answer

    def reset(self) -> None:
        self.turns = []

    def prompt_tokens(self, user_text: str) -> int:
        return len(prompt_ids(self.loaded, render_prompt(self.loaded, self.messages(user_text))))


def _rendering(chat_format: ChatFormat) -> str:
    if isinstance(chat_format, TokenizerTemplate):
        return "its tokenizer's chat template"
    return "no template: the prompt as it is"
