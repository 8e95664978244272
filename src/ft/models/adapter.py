"""Adapters: the LoRA family (target detection, the peft config) and soft prompts (prompt tuning),
attaching them to a model, and which of them can be folded into the weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.config.schema import SOFT_PROMPT_ADAPTERS, AdapterSettings, FtConfig

if TYPE_CHECKING:
    from peft import LoraConfig, PromptTuningConfig


@dataclass
class AdaptedModel:
    model: Any
    trainable_params: int
    total_params: int
    target_modules: list[str]

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0


def find_linear_targets(model: Any) -> list[str]:
    """Leaf names of every linear layer but the output head: nn.Linear (bitsandbytes' Linear4bit
    and Linear8bitLt subclass it, so k-bit layers are found too) and transformers' Conv1D (GPT-2's
    linear layers, weight stored transposed; peft wraps them with fan_in_fan_out)."""
    import torch

    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D") and module is not head
    }
    return sorted(names)


def target_modules(cfg: AdapterSettings, model: Any) -> list[str]:
    if cfg.lora_target_modules:
        return list(cfg.lora_target_modules)
    if cfg.lora_target_linear:
        return find_linear_targets(model)
    raise FtError(
        f"adapter: {cfg.adapter} needs target modules",
        hint="set lora_target_linear: true (every linear layer) or lora_target_modules: [q_proj, v_proj]",
    )


def build_lora_config(cfg: AdapterSettings, targets: list[str]) -> LoraConfig:
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int, accepts float
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        modules_to_save=list(cfg.lora_modules_to_save) if cfg.lora_modules_to_save else None,
        fan_in_fan_out=cfg.lora_fan_in_fan_out,
        use_dora=cfg.peft_use_dora,
        use_rslora=cfg.peft_use_rslora,
        bias="none",
        layers_to_transform=cfg.peft_layers_to_transform,
        layers_pattern=cfg.peft_layers_pattern,
    )


def build_prompt_tuning_config(cfg: AdapterSettings) -> PromptTuningConfig:
    """peft's soft prompt. Always peft's random start: a text start is written in afterwards from ft's
    own tokenizer (init_soft_prompt_from_text), since peft's TEXT start reloads a tokenizer by path
    (which a GGUF base does not have) and puts BOS first where the tokenizer adds one."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    return PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=cfg.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )


def soft_prompt_init_ids(tokenizer: Any, text: str, count: int) -> list[int]:
    """The text's token ids (no special tokens), repeated or cut to `count`, as peft does for TEXT."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise FtError(
            f"prompt_tuning_init_text: {text!r} encodes to no token", hint="give a few words of instruction"
        )
    repeats = -(-count // len(ids))
    return (ids * repeats)[:count]


def init_soft_prompt_from_text(peft_model: Any, tokenizer: Any, text: str) -> None:
    """Copy the embeddings of the text's tokens into the soft prompt (Lester et al. 2021: a start from
    real token embeddings trains faster and better than a random one on small models)."""
    import torch

    encoder = peft_model.prompt_encoder[peft_model.active_adapter].embedding
    ids = soft_prompt_init_ids(tokenizer, text, encoder.weight.shape[0])
    embeddings = peft_model.get_input_embeddings()
    with torch.no_grad():
        vectors = embeddings(torch.tensor(ids, device=embeddings.weight.device))
        encoder.weight.copy_(vectors.to(encoder.weight.dtype))


def is_soft_prompt(adapter: str | None) -> bool:
    return adapter in SOFT_PROMPT_ADAPTERS


def refuse_folding(adapter: str | None, run_dir: Path, command: str) -> None:
    """`ft merge` and `ft export` need weights to fold the adapter into; a soft prompt has none."""
    if is_soft_prompt(adapter):
        raise FtError(
            f"{command}: {run_dir} holds a soft prompt ({adapter}): input vectors put before every "
            "prompt, not a change to any weight, so there is nothing to fold into the model",
            hint=f"use the run folder itself (ft chat / generate / eval {run_dir} load the base and the "
            "soft prompt); for one self-contained model, train with adapter: lora",
        )


def text_logits(logits: Any, length: int) -> Any:
    """The logits of the text's own positions: a soft prompt's model returns its virtual tokens'
    positions first, and any other model exactly `length` positions (then this changes nothing)."""
    return logits[:, logits.shape[1] - length :]


def is_kbit(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total); peft's count knows that a 4-bit parameter packs two values per element."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def checkpointing_kwargs(cfg: FtConfig) -> dict[str, Any]:
    """The config's gradient_checkpointing_kwargs, else non-reentrant checkpointing: it back-propagates
    through frozen k-bit layers without needing the inputs to require grad ("element 0 of tensors
    does not require grad"). Reentrant checkpointing (use_reentrant: true) gets inputs that do."""
    return dict(cfg.gradient_checkpointing_kwargs or {"use_reentrant": False})


def attach_adapter(cfg: FtConfig, model: Any, tokenizer: Any = None) -> AdaptedModel:
    """Wrap the model for training: a new or continued LoRA adapter, a soft prompt, or (no adapter)
    the model as it is. `tokenizer`: for a soft prompt started from text."""
    if cfg.adapter is None:
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs(cfg))
        trainable, total = count_parameters(model)
        return AdaptedModel(model, trainable, total, [])
    if is_kbit(model):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing_kwargs(cfg),
        )
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs(cfg))
        model.enable_input_require_grads()
    targets: list[str] = []  # a soft prompt wraps no layer
    if is_soft_prompt(cfg.adapter):
        peft_model = _soft_prompt_model(cfg, model, tokenizer)
    elif cfg.lora_model_dir:
        peft_model, targets = _load_existing_adapter(cfg.lora_model_dir, model)
    else:
        from peft import get_peft_model

        targets = target_modules(cfg, model)
        peft_model = get_peft_model(model, build_lora_config(cfg, targets))
    trainable, total = count_parameters(peft_model)
    return AdaptedModel(peft_model, trainable, total, targets)


def _soft_prompt_model(cfg: AdapterSettings, model: Any, tokenizer: Any) -> Any:
    from peft import get_peft_model

    peft_model = get_peft_model(model, build_prompt_tuning_config(cfg))
    if cfg.prompt_tuning_init == "text":
        if tokenizer is None:
            raise ValueError("a soft prompt started from text needs the tokenizer")
        init_soft_prompt_from_text(peft_model, tokenizer, str(cfg.prompt_tuning_init_text))
    return peft_model


def _load_existing_adapter(folder: str, model: Any) -> tuple[Any, list[str]]:
    from peft import PeftModel

    path = Path(folder).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise FtError(
            f"lora_model_dir: {folder} holds no adapter (adapter_config.json missing)",
            hint="point it at a run folder or checkpoint written by ft train",
        )
    peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=True)
    targets = getattr(peft_model.peft_config["default"], "target_modules", None)
    return peft_model, sorted(targets) if targets else []
