"""Read an axolotl config as ft's: every key that is not an ft field is sorted by its status in
`ft.config.axolotl_table` before validation.

- left unset (empty, null, false) or at axolotl's own default: dropped without a word;
- mapped: read as ft keys, with a note (`flash_attention: true` -> `attn_implementation`);
- ignored: dropped, with a note saying why that changes nothing;
- unsupported: a problem line saying so and what to do; a key that turns on a whole feature ft
  lacks (`reward_model`, `processor_type`, ...) is one line naming the feature, and the other
  problems of that config (its datasets, ...) are not listed;
- anything else is left for the schema, which reports it as an unknown key (with a did-you-mean).

An empty value of an ft field that does not take null (`gradient_checkpointing:` in many axolotl
examples) also means "the default" here.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ft.base.redact import redact
from ft.config.axolotl_table import (
    DATASET_RENAMED,
    DATASET_SAME_AS_FT,
    PLUGINS,
    RENAMED,
    SAME_AS_FT,
    VALUE_MAPPED,
    KeyStatus,
    dataset_key_status,
    leaves_it_off,
    top_key_status,
)
from ft.config.formats import CONVERSATIONS
from ft.config.rl import RL_METHODS_TEXT, RL_REFUSED, pair_type_fields
from ft.config.schema import DatasetSettings, FtConfig

# transformers' push strategies other than "end": ft pushes the same final model, once.
AXOLOTL_HUB_STRATEGIES = ("every_save", "checkpoint", "all_checkpoints")

# axolotl's user-defined prompt (`type:` given as a mapping) holds these dataset keys.
USER_DEFINED_TYPE_KEYS = (
    "system_prompt",
    "system_format",
    "field_system",
    "field_instruction",
    "field_input",
    "field_output",
    "format",
    "no_input_format",
    "field",
)
# axolotl's defaults for a user-defined prompt (prompt_strategies/user_defined.py).
USER_DEFINED_DEFAULTS = {"no_input_format": "{instruction} ", "system_format": "{system}"}


@dataclass
class Translation:
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    features: dict[str, str] = field(default_factory=dict)
    """Whole features ft lacks, by name: the line of the first key that asks for each."""
    dataset_features: dict[str, str] = field(default_factory=dict)

    def refuse_feature(self, key: str, value: Any, status: KeyStatus, dataset: bool = False) -> None:
        name = status.feature
        shown = f"{key}: {_show(value)}" if isinstance(value, str | int | float) else key
        found = self.dataset_features if dataset else self.features
        found.setdefault(name or key, f"{shown}: {name} is not available in ft ({status.note})")

    @property
    def refusals(self) -> list[str]:
        """The features to name, one line each, instead of any other problem. A dataset's
        preference columns follow from the config's `rl:` line, so they are named only without one."""
        return sorted((self.features or self.dataset_features).values())


def _show(value: Any) -> str:
    """A value as YAML would write it in flow style: true, null, "text", [a, b]."""
    return json.dumps(value, default=str)


def is_unset(value: Any) -> bool:
    """axolotl reads an empty value, null or false as "not set"."""
    return value is None or value is False or value == "" or value == [] or value == {}


def translate_axolotl(data: Mapping[str, Any]) -> Translation:
    """ft's view of a raw config mapping: axolotl keys mapped or dropped, with notes and problems."""
    out = Translation({})
    # ft's own keys first, so that a renamed axolotl key can see what it would overwrite.
    for key, value in data.items():
        if key in FtConfig.model_fields and key not in VALUE_MAPPED and not _special_value(out, key, value):
            _keep_field(out.data, FtConfig, key, value)
    for key, value in data.items():
        if key not in FtConfig.model_fields or key in VALUE_MAPPED:
            _translate_top_key(out, key, value)
    _imply_jinja(out, "", out.data)
    for list_key in ("datasets", "test_datasets"):
        items = out.data.get(list_key)
        if isinstance(items, list):
            out.data[list_key] = [
                _translate_dataset(out, f"{list_key}[{i}]", item, data) if isinstance(item, Mapping) else item
                for i, item in enumerate(items)
            ]
            for i, item in enumerate(out.data[list_key]):
                if isinstance(item, dict):
                    _translate_pair_type(out, f"{list_key}[{i}]", item)
    return out


def _special_value(out: Translation, key: str, value: Any) -> bool:
    """ft fields whose axolotl value needs reading first; True when handled here."""
    if key == "eval_causal_lm_metrics" and isinstance(value, list) and "comet" in value:
        out.data[key] = [metric for metric in value if metric != "comet"]
        out.notes.append(
            "eval_causal_lm_metrics: comet left out: it scores with a COMET model ft does not load"
        )
        return True
    if key == "hub_strategy" and value in AXOLOTL_HUB_STRATEGIES:
        out.data[key] = "end"
        out.notes.append(
            f"hub_strategy: {value} (axolotl) read as end: ft pushes the finished run once, "
            "not its checkpoints on the way"
        )
        return True
    if key == "rl" and isinstance(value, str) and value.lower() in RL_REFUSED:
        # A method ft does not train is a whole feature: named alone, as the schema words it, and
        # under the name its own keys (kto_*, grpo_*, ...) use, so that it is named once.
        out.features[RL_REFUSED[value.lower()]] = (
            f"rl: {RL_REFUSED[value.lower()]} is not supported by ft: use rl: {RL_METHODS_TEXT}"
        )
        return False
    if key == "tokens" and isinstance(value, Mapping):
        # axolotl before v0.3 named the special tokens `tokens`.
        out.data["special_tokens"] = {**dict(value), **(out.data.get("special_tokens") or {})}
        out.notes.append("tokens: a mapping (axolotl's old name) read as special_tokens")
        return True
    return False


def _translate_pair_type(out: Translation, where: str, dataset: dict[str, Any]) -> None:
    """axolotl's DPO types (`chatml.intel`, `chat_template.default`, ...) name a field layout and a
    template; ft reads the layout and renders with the run's own format, as its SFT rows were."""
    kind = dataset.get("type")
    fields = pair_type_fields(kind) if isinstance(kind, str) else None
    if fields is None:
        return
    if out.data.get("rl") in (None, "", False):
        out.problems.append(
            f"{where}.type: axolotl's {kind} is a preference-pair type: set rl: {RL_METHODS_TEXT}"
        )
        dataset["type"] = "chat_template"  # said once, not again as an unknown format
        return
    dataset["type"] = "chat_template"
    for key, column in fields.items():
        dataset.setdefault(key, column)
    template = dataset.get("chat_template") or out.data.get("chat_template") or "tokenizer_default"
    mapped = "".join(f", {key}: {dataset[key]}" for key in fields)
    out.notes.append(
        f"{where}.type: {kind} (axolotl) read as type: chat_template{mapped}; "
        f"rendered with chat_template {template}, the run's format"
    )


def _translate_top_key(out: Translation, key: str, value: Any) -> None:
    status = top_key_status(key, FtConfig.model_fields)
    if status.kind == "unknown":
        out.data[key] = value  # the schema reports it, with a did-you-mean
        return
    if is_unset(value) or (status.kind in ("ignored", "unsupported") and leaves_it_off(key, value)):
        return
    shown = f"{key}: {_show(redact(value, key))}"
    if key in VALUE_MAPPED:
        mapped = VALUE_MAPPED[key](value)
        if mapped:
            out.data.update(mapped)
            out.notes.append(f"{shown} (axolotl) read as {_read_as(mapped)}: offloading is a memory option")
        else:
            _keep_field(out.data, FtConfig, key, value)
    elif key in RENAMED:
        _rename(out, key, shown, RENAMED[key](value))
    elif key == "plugins":
        _plugins(out, value)
    elif key == "batch_size":
        _batch_size(out, value)
    elif key == "cosine_min_lr_ratio":
        _cosine_min_lr(out, value)
    elif key == "fsdp_version":
        _fsdp_version(out, value)
    elif key == "default_system_message":
        pass  # read with the legacy ShareGPT datasets (_conversation)
    elif status.kind == "ignored":
        out.notes.append(f"{shown} ignored: {status.note}")
    elif key in SAME_AS_FT and value in SAME_AS_FT[key]:
        pass
    elif status.feature is not None:
        out.refuse_feature(key, value, status)
    elif key in SAME_AS_FT:
        out.problems.append(f"{key}: {_show(value)} is not supported by ft: {status.note}")
    else:
        out.problems.append(f"{key}: axolotl's {key} is not supported by ft: {status.note}")


def _read_as(mapped: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {_show(v)}" for k, v in mapped.items())


def _rename(out: Translation, key: str, shown: str, mapped: dict[str, Any]) -> None:
    for target, new in mapped.items():
        old = out.data.get(target)
        if old is not None and old != new and target in out.data:
            out.problems.append(
                f"{key}: means {target}: {_show(new)}, but {target} is {_show(old)}: keep one"
            )
            return
    if key.startswith("liger_") and all(out.data.get(k) == v for k, v in mapped.items()):
        return  # another liger_* key said it already
    out.data.update(mapped)
    out.notes.append(f"{shown} (axolotl) read as {_read_as(mapped)}")


def _plugins(out: Translation, value: Any) -> None:
    for plugin in value if isinstance(value, list) else [value]:
        kind, why = PLUGINS.get(str(plugin), ("unsupported", "ft has no plugins"))
        if kind == "unsupported":
            out.problems.append(f"plugins: {plugin}: axolotl's plugin is not available in ft ({why})")
        elif kind == "ignored":
            out.notes.append(f"plugins: {plugin} ignored: {why}")


def _batch_size(out: Translation, value: Any) -> None:
    """axolotl's old total batch: gradient_accumulation_steps = batch_size // micro_batch_size."""
    micro = out.data.get("micro_batch_size") or 1
    if out.data.get("gradient_accumulation_steps") is not None:
        out.notes.append(
            f"batch_size: {_show(value)} ignored: gradient_accumulation_steps is set (as in axolotl)"
        )
    elif isinstance(value, int) and isinstance(micro, int) and value >= micro:
        out.data["gradient_accumulation_steps"] = value // micro
        out.notes.append(
            f"batch_size: {value} (axolotl) read as gradient_accumulation_steps: {value // micro} "
            f"(batch_size / micro_batch_size, per process)"
        )
    else:
        out.problems.append(f"batch_size: {_show(value)} is not a whole multiple of micro_batch_size {micro}")


def _cosine_min_lr(out: Translation, value: Any) -> None:
    scheduler = out.data.get("lr_scheduler", "cosine")
    if scheduler != "cosine":
        out.problems.append(f"cosine_min_lr_ratio: needs lr_scheduler: cosine, not {_show(scheduler)}")
        return
    mapped = {"lr_scheduler": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": value}}
    out.data.update(mapped)
    out.notes.append(f"cosine_min_lr_ratio: {_show(value)} (axolotl) read as {_read_as(mapped)}")


def _fsdp_version(out: Translation, value: Any) -> None:
    fsdp_config = out.data.get("fsdp_config")
    if not isinstance(fsdp_config, Mapping):
        out.notes.append(f"fsdp_version: {_show(value)} ignored: there is no fsdp_config")
        return
    out.data["fsdp_config"] = {**dict(fsdp_config), "version": value}
    out.notes.append(f"fsdp_version: {_show(value)} (axolotl) read as fsdp_config.version: {_show(value)}")


TEMPLATE_RENAMED = {"llama2": "llama2_chat"}
"""Template names written for ft's formats: Llama 2's chat format is ft's llama2_chat."""


def _imply_jinja(out: Translation, where: str, holder: dict[str, Any]) -> None:
    """`chat_template_jinja` without `chat_template`: axolotl reads it as chat_template: jinja."""
    path = f"{where}.chat_template" if where else "chat_template"
    if holder.get("chat_template_jinja") and not holder.get("chat_template"):
        holder["chat_template"] = "jinja"
        out.notes.append(f"{path}_jinja given: chat_template read as jinja")
    name = holder.get("chat_template")
    if isinstance(name, str) and name in TEMPLATE_RENAMED:
        holder["chat_template"] = TEMPLATE_RENAMED[name]
        out.notes.append(f"{path}: {name} read as {TEMPLATE_RENAMED[name]}")


# ---------------------------------------------------------------------------------------------
# One dataset entry


def _translate_dataset(
    out: Translation, where: str, item: Mapping[str, Any], top: Mapping[str, Any]
) -> dict[str, Any]:
    kind = item.get("type")
    if isinstance(kind, Mapping):
        item = _flatten_user_defined_type(out, where, item, kind)
    elif kind is None and "type" in item:
        item = {k: v for k, v in item.items() if k != "type"}
        out.notes.append(f"{where}.type: empty: read as ft's default, alpaca")
    dataset: dict[str, Any] = {}
    for key, value in item.items():
        if key in DatasetSettings.model_fields:
            _keep_field(dataset, DatasetSettings, key, value)
    for key, value in item.items():
        status = dataset_key_status(key, DatasetSettings.model_fields)
        if status.kind == "supported" or (status.kind != "unknown" and is_unset(value)):
            continue
        if value in DATASET_SAME_AS_FT.get(key, ()) or key == "conversation":
            continue
        if key in DATASET_RENAMED:
            mapped = DATASET_RENAMED[key](value, dataset)
            dataset.update(mapped)
            out.notes.append(f"{where}.{key}: {_show(value)} (axolotl) read as {_read_as(mapped)}")
        elif status.feature is not None:
            out.refuse_feature(f"{where}.{key}", value, status, dataset=True)
        elif status.kind == "unsupported":
            out.problems.append(f"{where}.{key}: axolotl's {key} is not supported by ft: {status.note}")
        else:
            dataset[key] = value  # unknown: the schema reports it
    _sharegpt(out, where, dataset, item, top)
    _imply_jinja(out, where, dataset)
    return dataset


def _sharegpt(
    out: Translation, where: str, dataset: dict[str, Any], item: Mapping[str, Any], top: Mapping[str, Any]
) -> None:
    """axolotl's legacy `type: sharegpt` (and `sharegpt:chat`, `sharegpt.load_*`): chat turns
    {from, value}, rendered with the FastChat template named by `conversation:`."""
    kind = dataset.get("type")
    if not (isinstance(kind, str) and kind.split(":")[0].split(".")[0] == "sharegpt"):
        if item.get("conversation") and not is_unset(item.get("conversation")):
            out.notes.append(
                f"{where}.conversation ignored: it names a ShareGPT template, and type is {kind}"
            )
        return
    dataset["type"] = "chat_template"
    dataset.setdefault("message_property_mappings", {"role": "from", "content": "value"})
    read_as = ["type: chat_template"]
    conversation = item.get("conversation")
    if isinstance(conversation, str) and conversation:
        template, system = CONVERSATIONS.get(conversation, (None, None))
        if template is None:
            known = ", ".join(CONVERSATIONS)
            out.problems.append(
                f"{where}.conversation: FastChat's {conversation!r} template is not available in ft: "
                f"use one of {known}, or type: chat_template with a chat_template"
            )
            return
        dataset.setdefault("chat_template", template)
        read_as.append(f"chat_template: {dataset['chat_template']}")
        system = top.get("default_system_message") or system
        if system and not dataset.get("system_prompt"):
            dataset["system_prompt"] = system
            read_as.append(f"system_prompt: {_show(system)} (FastChat's default for rows without one)")
    out.notes.append(f"{where}.type: {kind} (axolotl's legacy ShareGPT) read as " + ", ".join(read_as))


def _flatten_user_defined_type(
    out: Translation, where: str, item: Mapping[str, Any], kind: Mapping[str, Any]
) -> dict[str, Any]:
    """axolotl's `type: {format: ..., field_instruction: ...}` becomes keys of the dataset, with
    axolotl's defaults for the keys it leaves out."""
    flat = {k: v for k, v in item.items() if k != "type"}
    unknown = [k for k in kind if k not in USER_DEFINED_TYPE_KEYS]
    if unknown:
        out.problems.append(
            f"{where}.type: unknown keys {unknown} in a custom prompt: use "
            + ", ".join(USER_DEFINED_TYPE_KEYS)
        )
    flat.update({k: v for k, v in kind.items() if k in USER_DEFINED_TYPE_KEYS and v is not None})
    if not flat.get("format"):
        out.problems.append(
            f"{where}.type: a custom prompt needs `format`, e.g. 'User: {{instruction}}\\nAssistant:'"
        )
        return flat
    for key, default in USER_DEFINED_DEFAULTS.items():
        flat.setdefault(key, default)
    out.notes.append(
        f"{where}.type: axolotl's custom prompt read as the dataset's format / field_* keys "
        f"(axolotl's defaults: no_input_format {_show(flat['no_input_format'])}, "
        f"system_format {_show(flat['system_format'])})"
    )
    return flat


# ---------------------------------------------------------------------------------------------
# Empty values of ft's own fields


def _keep_field(target: dict[str, Any], model: type[BaseModel], key: str, value: Any) -> None:
    """Keep `value`, except an empty one that the field cannot hold: axolotl means the default."""
    annotation = model.model_fields[key].annotation
    if value == "" and not _accepts(annotation, str):
        value = None
    if value is False and not _accepts(annotation, bool):
        value = None
    if value is None and not _accepts(annotation, type(None)):
        return
    target[key] = value


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field's type admits values of `kind` (None, bool, str): walks unions and Optional."""
    if annotation is kind:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(arg, kind) for arg in typing.get_args(annotation))
    return annotation is Any
