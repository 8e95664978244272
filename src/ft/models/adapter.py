"""The LoRA family of adapters: target detection, the peft config, attaching it to a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.config.schema import AdapterSettings, FtConfig

if TYPE_CHECKING:
    from peft import LoraConfig


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


def attach_adapter(cfg: FtConfig, model: Any) -> AdaptedModel:
    """Wrap the model for training: a new or continued LoRA adapter, or (no adapter) the model as it is."""
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
    if cfg.lora_model_dir:
        peft_model, targets = _load_existing_adapter(cfg.lora_model_dir, model)
    else:
        from peft import get_peft_model

        targets = target_modules(cfg, model)
        peft_model = get_peft_model(model, build_lora_config(cfg, targets))
    trainable, total = count_parameters(peft_model)
    return AdaptedModel(peft_model, trainable, total, targets)


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
