"""Model cards: the README.md of a run folder, a merged folder or a pushed GGUF, in the Hub's format.

Generated from what the run recorded (run.json, config.yml, eval.json, ft_merge.json), never
hand-edited: `ft train` writes the run's card, `ft eval` and `ft merge` write it again with what
they measured. The YAML header carries the Hub's fields (base_model when it is a Hub id or run.json's
portable base_model_name names one, library_name, tags, license when the base declares one, datasets that are Hub ids); the body says
how the model was trained and how to load it with plain transformers / peft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ft.config.sources import HUB_ID, PACKAGE_SCHEME, resolve_model_source
from ft.runs.folder import EVAL_JSON, MERGE_JSON, RunInfo, read_json, read_run, write_text_atomic

CARD = "README.md"
HYPER_PARAMETERS = (
    "adapter",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lora_target_linear",
    "peft_use_dora",
    "peft_use_rslora",
    "load_in_4bit",
    "load_in_8bit",
    "bnb_4bit_quant_type",
    "sequence_len",
    "sample_packing",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "num_epochs",
    "max_steps",
    "optimizer",
    "lr_scheduler",
    "learning_rate",
    "warmup_ratio",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "seed",
)


_ADAPTER_NAMES = {"prompt_tuning": "soft prompt (prompt tuning; the base model's weights unchanged)"}


def hub_base_model(reference: str | None) -> str | None:
    """The base model's Hub id, or None for a local folder, a .gguf file or a pkg:// file."""
    if not reference or reference.startswith(PACKAGE_SCHEME) or reference.endswith(".gguf"):
        return None
    if Path(reference).expanduser().exists() or not HUB_ID.match(reference) or "/" not in reference:
        return None
    return reference


def base_license(reference: str | None) -> str | None:
    """The base model's license when it declares one: a GGUF's general.license, or the license in
    the YAML header of a cached Hub model's README.md. Never looked up online."""
    if not reference:
        return None
    try:
        source = resolve_model_source(reference)
    except Exception:  # an unresolvable reference has no license to report
        return None
    if source.kind == "gguf":
        return _gguf_license(Path(source.location))
    if source.kind == "hub":
        return _cached_card_license(source.location)
    return _card_license(Path(source.location) / CARD)


def _gguf_license(path: Path) -> str | None:
    try:
        from gguf import GGUFReader

        field = GGUFReader(path).get_field("general.license")
        return str(field.contents()) if field is not None else None
    except Exception:  # not readable as GGUF: no license known
        return None


def _cached_card_license(repo_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, CARD)
    return _card_license(Path(cached)) if isinstance(cached, str) else None


def _card_license(path: Path) -> str | None:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    header = text.split("---", 2)[1]
    try:
        data = yaml.safe_load(header)
    except yaml.YAMLError:
        return None
    value = data.get("license") if isinstance(data, dict) else None
    return str(value) if value else None


def hub_datasets(run: RunInfo) -> list[str]:
    paths = [d.path for d in (*run.config.datasets, *(run.config.test_datasets or []))]
    return list(dict.fromkeys(p for p in paths if "/" in p and HUB_ID.match(p) and not Path(p).exists()))


def front_matter(fields: dict[str, Any]) -> str:
    import yaml

    kept = {key: value for key, value in fields.items() if value not in (None, [], "")}
    return "---\n" + yaml.safe_dump(kept, sort_keys=False, allow_unicode=True) + "---\n"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "-" if value is None else str(value)


def hyper_parameter_table(run: RunInfo) -> str:
    settings = run.config.model_dump()
    rows = [
        f"| {key} | {_value(settings.get(key))} |"
        for key in HYPER_PARAMETERS
        if settings.get(key) is not None
    ]
    return "| setting | value |\n| --- | --- |\n" + "\n".join(rows)


def data_table(run: RunInfo) -> str:
    counts = run.data.get("data") or {}
    rows = [f"| {key.replace('_', ' ')} | {value} |" for key, value in counts.items()]
    unit = "pairs" if run.data.get("rl") else "rows"
    return (
        f"| data | {unit} |\n| --- | --- |\n" + "\n".join(rows) if rows else "Row counts were not recorded."
    )


RL_SETTINGS = (
    "beta",
    "loss_type",
    "label_smoothing",
    "precompute_ref_log_probs",
    "orpo_alpha",
    "max_prompt_len",
)


def preference_lines(record: dict[str, Any]) -> list[str]:
    """A preference run's section: run.json's `rl` (method, reference, settings, last rewards)."""
    settings = ", ".join(f"{key} {_value(record[key])}" for key in RL_SETTINGS if record.get(key) is not None)
    lines = [
        f"- method: `{record.get('method')}`" + (f" ({settings})" if settings else ""),
        f"- reference: {record.get('reference')}",
    ]
    for split, key in (("train", "final_train"), ("eval", "final_eval")):
        rewards = record.get(key)
        if rewards:
            lines.append(
                f"- final reward margin ({split}): {_number(rewards.get('margins'))}, "
                f"accuracy {_number(rewards.get('accuracies'))} "
                f"(chosen {_number(rewards.get('chosen'))}, rejected {_number(rewards.get('rejected'))})"
            )
    return lines


def _base_label(evaluation: dict[str, Any]) -> str:
    """What eval.json's `base` is: the base model, or a preference run's reference."""
    label = evaluation.get("base_label")
    return "base model" if label in (None, "base") else str(label)


def pair_eval_lines(evaluation: dict[str, Any]) -> list[str]:
    """`ft eval`'s held-out pairs: margin of log p(chosen) over log p(rejected), tuned and reference."""
    lines = []
    for label, result in (
        ("tuned", evaluation.get("tuned")),
        (_base_label(evaluation), evaluation.get("base")),
    ):
        pairs = (result or {}).get("pairs")
        if pairs:
            lines.append(
                f"  pairs ({label}): margin log p(chosen) - log p(rejected) {_number(pairs.get('margin'))}, "
                f"chosen likelier on {_number(pairs.get('accuracy'))} of {pairs.get('pairs')}"
            )
    rewards = evaluation.get("rewards")
    if rewards:
        lines.append(
            f"  DPO implicit reward (beta {_number(rewards.get('beta'))}): mean {_number(rewards.get('margin'))}, "
            f"positive on {_number(rewards.get('accuracy'))} of the pairs"
        )
    return lines


def results_lines(run: RunInfo, evaluation: dict[str, Any] | None, merge: dict[str, Any] | None) -> list[str]:
    lines = [
        f"- steps: {run.global_step}",
        f"- final train loss: {_number(run.data.get('final_train_loss'))}",
        f"- final eval loss: {_number(run.data.get('final_eval_loss'))}",
    ]
    if evaluation:
        lines.append(f"- `ft eval` on {evaluation.get('rows')} held-out rows ({evaluation.get('split')}):")
        lines.append(
            f"  eval loss {_number(evaluation.get('loss'))}, perplexity {_number(evaluation.get('perplexity'))}"
        )
        metrics = evaluation.get("metrics") or {}
        shown = ", ".join(
            f"{k} {_number(v)}" for k, v in metrics.items() if k != "rows" and isinstance(v, int | float)
        )
        if shown:
            lines.append(f"  {shown}")
        base = (evaluation.get("base") or {}).get("metrics") or {}
        base_shown = ", ".join(
            f"{k} {_number(v)}" for k, v in base.items() if k != "rows" and isinstance(v, int | float)
        )
        if base_shown:
            lines.append(f"  {_base_label(evaluation)}: {base_shown}")
        forgetting = evaluation.get("forgetting") or {}
        if forgetting.get("summary"):
            lines.append(
                f"- forgetting (`ft eval --forgetting`, general prompts and text): {forgetting['summary']}"
            )
        lines += pair_eval_lines(evaluation)
    if merge:
        lines.append(
            f"- merged in {merge.get('dtype')}: max |logit difference| against base+adapter "
            f"{_number(merge.get('max_abs_logit_diff'))} (tolerance {_number(merge.get('tolerance'))})"
        )
    return lines


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def versions_line(run: RunInfo) -> str:
    versions = run.data.get("library_versions") or {}
    shown = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    return f"ft {run.data.get('ft_version')}, {shown}"


def load_snippet(repo: str, merged: bool) -> str:
    if merged:
        loader = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo}")\n'
        )
    else:
        loader = (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}")  # the base model + this adapter\n'
        )
    return (
        "```python\n"
        + loader
        + f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n'
        + 'messages = [{"role": "user", "content": "Hello!"}]\n'
        + "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
        + 'return_dict=True, return_tensors="pt")\n'
        + "output = model.generate(**inputs, max_new_tokens=128)\n"
        + 'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))\n'
        + "```\n"
    )


def portable_base(record: dict[str, Any]) -> str:
    """How a record names its base model to readers elsewhere: base_model_name (a Hub id when the
    origin is known, never a cache path), else base_model as the config wrote it."""
    return str(record.get("base_model_name") or record.get("base_model") or "")


def render_card(run: RunInfo, *, merged: dict[str, Any] | None = None, repo: str | None = None) -> str:
    """The card of the run folder, or (with `merged`, its ft_merge.json) of its merged folder."""
    base = str(run.data.get("base_model") or "")
    name_of_base = portable_base(run.data)
    adapter = run.adapter
    library = "transformers" if merged is not None or adapter is None else "peft"
    preference = run.data.get("rl") if isinstance(run.data.get("rl"), dict) else None
    tags = [
        "ft",
        str(preference.get("method")) if preference else "sft",
        "trl",
        *([adapter] if adapter else ["full-fine-tune"]),
        *(["merged"] if merged else []),
    ]
    header = front_matter(
        {
            "base_model": hub_base_model(name_of_base),
            "library_name": library,
            "pipeline_tag": "text-generation",
            "license": base_license(base),
            "tags": tags,
            "datasets": hub_datasets(run),
        }
    )
    name = run.run_dir.name if merged is None else f"{run.run_dir.name} (merged)"
    what = _ADAPTER_NAMES.get(adapter or "", "LoRA adapter") if library == "peft" else "model"
    evaluation = read_json(run.run_dir / EVAL_JSON)
    terminator = run.data.get("terminator")
    body = [
        f"# {name}",
        "",
        f"A {what} fine-tuned from `{name_of_base}` with [ft](https://pypi.org/project/ft-finetune/) "
        f"({adapter or 'full fine-tune'}{', ' + _quantization(run) if _quantization(run) else ''}).",
        "This card is generated from the run's record (run.json); ft writes it again after `ft eval` and `ft merge`.",
        "",
        "## Training format",
        "",
        f"Prompt format `{run.data.get('prompt_format')}`; each answer ends with `{terminator}`, the token to stop at. "
        "The tokenizer's chat template renders exactly this format, so `apply_chat_template` prompts the model "
        "as it was trained.",
        "",
        "## Hyper-parameters",
        "",
        hyper_parameter_table(run),
        "",
        *(["## Preference tuning", "", *preference_lines(preference), ""] if preference else []),
        "## Data",
        "",
        data_table(run),
        "",
        "## Results",
        "",
        *results_lines(run, evaluation, merged),
        "",
        "## How to load",
        "",
        load_snippet(repo or "PATH_OR_REPO_ID", merged is not None or adapter is None),
        "## Versions",
        "",
        versions_line(run),
        "",
    ]
    return header + "\n" + "\n".join(body)


def _quantization(run: RunInfo) -> str:
    quantization = run.data.get("quantization")
    if isinstance(quantization, dict):
        bits = quantization.get("bits") or quantization.get("load_in")
        kind = quantization.get("quant_type") or quantization.get("type")
        return " ".join(str(part) for part in (f"{bits}-bit" if bits else None, kind) if part)
    return str(quantization) if quantization else ""


def write_run_card(run_dir: Path, repo: str | None = None) -> Path:
    """README.md of a finished run folder, from its run.json (and eval.json when ft eval ran)."""
    run = read_run(run_dir)
    path = run.run_dir / CARD
    write_text_atomic(path, render_card(run, repo=repo or str(run.run_dir.resolve())))
    return path


def write_merged_card(folder: Path, run: RunInfo, location: Path) -> Path:
    """README.md of a merged folder (written into `folder`, to be found at `location`), from its
    run's record and the merge's ft_merge.json."""
    merge = read_json(folder / MERGE_JSON) or {}
    path = folder / CARD
    write_text_atomic(path, render_card(run, merged=merge, repo=str(location)))
    return path


def render_gguf_card(record: dict[str, Any], repo: str) -> str:
    """The card of a pushed GGUF file, from its NAME.ft_export.json."""
    base = str(record.get("base_model") or "")
    header = front_matter(
        {
            "base_model": hub_base_model(portable_base(record)),
            "license": base_license(base),
            "tags": ["ft", "gguf", "llama.cpp", "ollama"],
        }
    )
    checks = record.get("verification") or {}
    name = str(record.get("gguf"))
    stem = name[: -len(".gguf")]
    lines = [
        f"# {stem}",
        "",
        f"A GGUF file ({record.get('type')}, {record.get('architecture')}) written by ft from a model fine-tuned from `{base}`. "
        "Its metadata holds the tokenizer and the chat template of the training format.",
        "",
        f"Verified when written: max |logit difference| against the merged model {_number(checks.get('max_abs_logit_diff'))}, "
        f"top-1 agreement {_number(checks.get('top1_agreement'))} on {checks.get('positions')} positions.",
        "",
        "```bash",
        f"llama-cli -m {name}            # llama.cpp",
        f"ollama create {stem} -f {stem}.Modelfile && ollama run {stem}",
        "```",
        "",
        f"Hub: `{repo}`.",
        "",
    ]
    return header + "\n" + "\n".join(lines)


def card_for_push(path: Path, repo: str) -> str:
    """The README.md pushed with a run folder, a merged folder or a GGUF file."""
    path = Path(path)
    if path.is_file():
        stem = path.name[: -len(".gguf")]
        record = read_json(path.with_name(f"{stem}.ft_export.json")) or {"gguf": path.name}
        return render_gguf_card(record, repo)
    if (path / "run.json").is_file():
        return render_card(read_run(path), repo=repo)
    merge = read_json(path / MERGE_JSON)
    run_dir = Path(str(merge.get("run_dir"))) if merge and merge.get("run_dir") else None
    if merge is not None and run_dir is not None and (run_dir / "run.json").is_file():
        return render_card(read_run(run_dir), merged=merge, repo=repo)
    header = front_matter({"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["ft"]})
    return (
        header
        + f"\n# {path.name}\n\nA model folder pushed with ft; its training run is not on this machine.\n\n"
        + load_snippet(repo, True)
    )
