"""Loading a run folder or a merged model folder for inference, ready to generate.

A run folder is rendered with the format it was trained on (`renderer_for_config` on its
config.yml, the run's own saved tokenizer), so the prompt given to the model is token for token
the prompt of a training example. A folder without ft metadata (a merged model, any model
folder) is rendered with its tokenizer's chat template: `ft train` saves a template that renders
the training format exactly, and `ft merge` copies that tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError, ModelLoadError
from ft.data.jinja import TokenizerTemplate
from ft.data.prompts import PHI3_END, ChatFormat, SpecialTokens, special_tokens_of
from ft.data.renderers import PlainText, renderer_for_config
from ft.runs.folder import (
    ADAPTER_CONFIG,
    MERGE_JSON,
    RUN_JSON,
    RunInfo,
    is_run_folder,
    read_run,
    run_hub_access,
)

if TYPE_CHECKING:
    from ft.config.schema import FtConfig
    from ft.models.precision import Precision


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

    from ft.models.precision import Precision, resolve_precision

    if not torch.cuda.is_available():
        return Precision("float32", bf16=False, fp16=False, use_cpu=True)
    if cfg is not None:
        return resolve_precision(cfg)
    if torch.cuda.is_bf16_supported():
        return Precision("bfloat16", bf16=True, fp16=False, use_cpu=False)
    return Precision("float16", bf16=False, fp16=True, use_cpu=False)


def load_run_folder(run: RunInfo) -> LoadedModel:
    """Base model (k-bit when the run was trained so) plus the run's adapter, or the run's full weights."""
    from ft.models.loading import load_model_from_path, locate_base_model

    cfg = run.config
    run_hub_access(run.run_dir)
    base_path = locate_base_model(run.base_model_path, cfg)
    tokenizer = load_folder_tokenizer(run.run_dir)
    precision = inference_precision(cfg)
    bits = (run.data.get("quantization") or {}).get("bits")
    has_adapter = (run.run_dir / ADAPTER_CONFIG).is_file()
    # The adapter goes on the base as it was trained: k-bit when the run was (run.json's quantization).
    quantized = bits is not None and has_adapter
    if has_adapter:
        base = load_model_from_path(cfg, base_path, tokenizer, precision, quantize=quantized)
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


def loaded_for_model(cfg: FtConfig, tokenizer: Any, model: Any) -> LoadedModel:
    """A model in memory (the one `ft train` is training) with what generation needs: the
    config's format, its terminator and the stop ids, as a run folder of that config would load."""
    chat_format = renderer_for_config(cfg, tokenizer)
    tokens = special_tokens_of(tokenizer)
    terminator = chat_format.terminator(tokens)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        chat_format=chat_format,
        tokens=tokens,
        terminator=terminator,
        stop_ids=stop_token_ids(tokenizer, terminator),
        description=f"the model in training, {cfg.base_model}",
        has_adapter=cfg.adapter is not None,
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

    from ft.models.precision import torch_dtype

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
    return PlainText()


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


def _rendering(chat_format: ChatFormat) -> str:
    if isinstance(chat_format, TokenizerTemplate):
        return "its tokenizer's chat template"
    return "no template: the prompt as it is"
