"""The training run: the trainer and the run folder (the SFTConfig is built in ft.train.settings).

`run_training` is the whole `ft train`: it claims the output folder
(ft.train.output_dir: refuse, start over, resume or replace), loads tokenizer, data, model and adapter,
trains with trl's SFTTrainer on the pre-tokenized rows (masks and packing as ft.data.pipeline made them),
stops cleanly on Ctrl-C/SIGTERM, and writes the run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ft.base.errors import FtError, TrainingInterrupted
from ft.base.perms import follow_umask
from ft.config.hub import TRAIN_NEEDS, prepare_hub_access
from ft.config.load import dump_config
from ft.config.schema import FtConfig
from ft.data.packing import PackedRowsCollator, varlen_attention
from ft.models.precision import Precision, resolve_precision
from ft.runs.folder import (
    ADAPTER_CONFIG,
    CONFIG_YML,
    FINAL_TMP,
    LOSS_PNG,
    METRICS_JSONL,
    RUN_JSON,
    RUN_MARKER,
    library_versions,
    newest_checkpoint,
    plot_loss,
    read_metrics,
    utc_now,
    write_json_atomic,
    write_text_atomic,
)
from ft.runs.outdir import writing
from ft.runs.record import Launch
from ft.train.launch import check_launch
from ft.train.settings import (
    build_sft_config,
    is_main_process_from_env,
    liger_note,
    set_mlflow_env,
    set_wandb_env,
    world_size_from_env,
)

if TYPE_CHECKING:
    from ft.train.callbacks import TrainEvent


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    final_train_loss: float | None
    final_eval_loss: float | None
    tokens_per_s: float | None
    """ft.train.callbacks.Throughput's: real tokens per second inside training steps."""
    train_runtime_s: float | None
    trainable_params: int
    total_params: int
    notes: list[str] = field(default_factory=list)
    preference: dict[str, Any] | None = None
    """Preference runs: run.json's `rl` (method, reference, last reward margins and accuracies)."""
    train_tokens: float | None = None
    train_step_seconds: float | None = None


@dataclass(frozen=True)
class RunStart:
    """How and when the run started: what run.json records and what the stop hints repeat.

    `started_at` is the run's first start; `resumes` lists every resume, the current one last."""

    launch: Launch = field(default_factory=Launch)
    flags: tuple[str, ...] = ()
    started_at: str = field(default_factory=utc_now)
    resumes: tuple[dict[str, Any], ...] = ()


class EvalProbe(Protocol):
    """An extra measurement at each evaluation (ft.infer.forgetting.ForgettingProbe for
    `eval_forgetting`): given by the caller, since a training stage does not import inference."""

    def start(self, cfg: FtConfig, model: Any, tokenizer: Any, base_path: str, precision: Precision) -> str:
        """Prepare with the model to be trained; returns a note for the user."""
        ...

    def measure(self, model: Any) -> dict[str, float]:
        """Metrics to add to the evaluation's row of metrics.jsonl (keys starting with eval_)."""
        ...

    def summary(self) -> str | None:
        """A line for the end of the run, or None."""
        ...


# ---------------------------------------------------------------------------------------------
# The run


def _no_event(event: TrainEvent) -> None:
    return None


def run_training(
    cfg: FtConfig,
    *,
    resume: bool = False,
    force: bool = False,
    allow_changes: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    launch: Launch | None = None,
    eval_probes: Sequence[EvalProbe] = (),
) -> TrainResult:
    """The whole `ft train`; raises OutputExistsError, TrainingInterrupted, WriteFailedError, FtError.
    `eval_probes`: measured at each evaluation; `eval_forgetting: true` needs one (the CLI gives it).

    Until the trainer takes over Ctrl-C/SIGTERM (a checkpoint, then a stop), a signal stops the
    command with TrainingInterrupted, so that a --force replacement is settled on the way out.
    `launch` is the command line (config file, --set) that run.json records and hints repeat.
    """
    from ft.base.signals import raise_on_signals
    from ft.train.output_dir import START_WRITE_HINT, auto_resumes, claimed_run_dir, record_data_content
    from ft.train.resume import check_data_change

    if cfg.eval_forgetting and not eval_probes:
        raise FtError(
            "eval_forgetting: true needs the forgetting probe, which ft train passes to run_training",
            hint="run it through ft train, or pass eval_probes=[ft.infer.forgetting.ForgettingProbe()]",
        )
    emit = on_event or _no_event
    launch = launch or Launch()
    flags = tuple(
        flag
        for flag, on in (("--resume", resume), ("--force", force), ("--allow-changes", allow_changes))
        if on
    )
    if cfg.hub_model_id:
        from ft.runs.hub import hub_token

        hub_token()  # no token: stop now, not after the training
    # Resolved: a symlinked output_dir is replaced where it points, and `.` or `x/..` get real names.
    run_dir = Path(cfg.output_dir).expanduser().resolve()
    main = is_main_process_from_env()
    if auto_resumes(cfg, run_dir, resume, force):
        resume = True
        emit(_note("auto_resume_from_checkpoints: resuming from the newest checkpoint of the run"))
    # Before the output folder is claimed: a launch that would save no weights is refused first.
    launch_notes = check_launch(cfg, resolve_precision(cfg).use_cpu, os.environ)
    with (
        raise_on_signals(stopped_before_training),
        claimed_run_dir(
            cfg,
            run_dir,
            resume=resume,
            force=force,
            main=main,
            note=lambda line: emit(_note(line)),
            config_path=launch.config_path,
            allow_changes=allow_changes,
        ) as claim,
    ):
        notes = prepare_hub_access(cfg, TRAIN_NEEDS)
        notes += [note for note in (liger_note(cfg),) if note] + launch_notes
        set_wandb_env(cfg)
        set_mlflow_env(cfg)
        if main:
            # Now, not at the end: an interrupted folder says what it was running.
            with writing(run_dir, START_WRITE_HINT):
                write_text_atomic(run_dir / CONFIG_YML, dump_config(cfg))

        from ft.data.chat_templates import chat_template_jinja
        from ft.data.prepare import prepare_run_data
        from ft.models.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(cfg)
        data, summary = prepare_run_data(cfg, tokenizer, note=lambda line: emit(_note(line)))
        if main:
            changed = check_data_change(claim.data_content, data.content, allow_changes)
            if changed and claim.resumes:
                claim.resumes[-1].setdefault("changes", {}).update(changed)
            record_data_content(claim, data.content)
        # Set before training so checkpoints carry it too: a template that renders the training format.
        # After prepare_data: the tokenizer's own template (tokenizer_default) renders the data.
        tokenizer.chat_template = chat_template_jinja(cfg, tokenizer)
        notes += summary
        start = RunStart(launch, flags, claim.started_at, tuple(claim.resumes))
        result = train_on_prepared(
            cfg,
            tokenizer,
            data,
            resume_from=claim.resume_from,
            emit=emit,
            notes=notes,
            start=start,
            eval_probes=eval_probes,
        )
    if cfg.hub_model_id and main:
        emit(_note(push_run_folder(run_dir, cfg)))
    return result


def push_run_folder(run_dir: Path, cfg: FtConfig) -> str:
    """The finished run folder to cfg.hub_model_id (hub_strategy: end); the line to show."""
    from ft.runs.card import card_for_push
    from ft.runs.hub import HubError, push

    assert cfg.hub_model_id is not None
    try:
        pushed = push(
            run_dir,
            cfg.hub_model_id,
            lambda repo: card_for_push(run_dir, repo),
            private=bool(cfg.hub_private_repo),
            revision=cfg.hub_revision,
        )
    except HubError as err:
        raise HubError(
            f"the run is saved in {run_dir}, but the push failed: {err.message}",
            hint=f"{err.hint}; then: ft push {run_dir} {cfg.hub_model_id}",
        ) from None
    return f"pushed {len(pushed.files)} files to {pushed.repo_id}" + (
        f" ({pushed.url})" if pushed.url else ""
    )


def stopped_before_training(signal_name: str) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"ft train stopped by {signal_name} before training started: nothing new was saved",
        hint="run the same command again",
    )


def train_on_prepared(
    cfg: FtConfig,
    tokenizer: Any,
    data: Any,
    *,
    resume_from: Path | None = None,
    emit: Callable[[TrainEvent], None] = _no_event,
    notes: list[str] | None = None,
    start: RunStart | None = None,
    eval_probes: Sequence[EvalProbe] = (),
) -> TrainResult:
    """Model, adapter, trainer and run folder for data already prepared (`ft.data.pipeline.PreparedData`)."""
    from transformers import set_seed

    from ft.models.adapter import attach_adapter
    from ft.models.loading import (
        load_model_from_path,
        portable_base_name,
        resolve_base_model_path,
        weights_description,
    )

    run_dir = Path(cfg.output_dir).expanduser()
    notes = list(notes or [])
    precision = resolve_precision(cfg)
    if precision.note:
        notes.append(precision.note)
    for note in notes:
        emit(_note(note))
    if data.train is None or len(data.train) == 0:
        raise FtError(
            "datasets: no training rows left after preparation", hint="run ft preprocess CONFIG to see why"
        )
    emit(_note(f"loading the base model {cfg.base_model} ({weights_description(cfg, precision)})"))
    began = time.monotonic()
    base_path = resolve_base_model_path(cfg, note=lambda line: emit(_note(line)))
    base_rows = _vocab_rows(base_path, cfg)
    # New embedding rows and LoRA A matrices are drawn at random before the trainer seeds
    # anything: without this, the same config trains differently after other work in the process.
    set_seed(cfg.seed)
    model = load_model_from_path(cfg, base_path, tokenizer, precision)
    emit(_note(f"base model loaded in {time.monotonic() - began:.1f} s"))
    adapted = attach_adapter(cfg, model, tokenizer)
    base_name = portable_base_name(cfg)
    emit(
        _note(
            f"trainable parameters: {adapted.trainable_params:,} of {adapted.total_params:,} "
            f"({100 * adapted.trainable_share:.2f}%)",
            trainable_params=adapted.trainable_params,
            total_params=adapted.total_params,
        )
    )
    if is_main_process_from_env():  # the probes measure on the main process only
        for probe in eval_probes:
            emit(_note(probe.start(cfg, adapted.model, tokenizer, base_path, precision)))
    sizes: dict[str, Any] = {
        "train_rows": len(data.train),
        "has_eval": data.eval is not None and len(data.eval) > 0,
        "world_size": world_size_from_env(),
    }
    reference = None
    if cfg.rl:
        from ft.train.preference import build_preference_config, load_reference

        reference, reference_note = load_reference(cfg, base_path, precision, len(tokenizer))
        if reference_note:
            emit(_note(reference_note))
        trainer_args: Any = build_preference_config(cfg, precision, run_dir, **sizes)
    else:
        trainer_args = build_sft_config(cfg, precision, run_dir, **sizes)
    context = RunContext(
        cfg=cfg,
        run_dir=run_dir,
        precision=precision,
        base_path=base_path,
        base_name=base_name,
        added_tokens=_added_tokens(tokenizer, base_rows),
        data_fingerprint=data.fingerprint,
        data_counts=data.report.counts(),
        terminator=terminator_of(cfg, tokenizer),
        start=start or RunStart(),
        notes=notes,
        data_content=data.content,
    )
    return _train_and_save(
        context, adapted, tokenizer, data, trainer_args, resume_from, emit, reference, eval_probes
    )


@dataclass
class RunContext:
    cfg: FtConfig
    run_dir: Path
    precision: Precision
    base_path: str
    base_name: str
    added_tokens: list[str]
    data_fingerprint: str
    data_counts: dict[str, Any]
    terminator: str
    start: RunStart
    notes: list[str]
    data_content: str = ""


def packed_rows_collator(cfg: FtConfig, tokenizer: Any) -> Any:
    """ft's collator for packed rows when the attention kernel has no varlen path, else None (trl's)."""
    if cfg.sample_packing and not varlen_attention(cfg.attn_implementation):
        return PackedRowsCollator(tokenizer.pad_token_id)
    return None


def terminator_of(cfg: FtConfig, tokenizer: Any) -> str:
    from ft.data.prompts import special_tokens_of
    from ft.data.renderers import renderer_for_config

    return renderer_for_config(cfg, tokenizer).terminator(special_tokens_of(tokenizer))


def _note(message: str, **values: Any) -> TrainEvent:
    from ft.train.callbacks import TrainEvent

    return TrainEvent("note", message=message, values=values)


def _vocab_rows(path: str, cfg: FtConfig) -> int | None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
        return int(config.get_text_config().vocab_size)
    except Exception:  # the loader reports unreadable models with a better message
        return None


def _added_tokens(tokenizer: Any, base_rows: int | None) -> list[str]:
    if base_rows is None or len(tokenizer) <= base_rows:
        return []
    return [str(t) for t in tokenizer.convert_ids_to_tokens(list(range(base_rows, len(tokenizer))))]


def _train_and_save(
    context: RunContext,
    adapted: Any,
    tokenizer: Any,
    data: Any,
    trainer_args: Any,
    resume_from: Path | None,
    emit: Callable[[TrainEvent], None],
    reference: Any = None,
    eval_probes: Sequence[EvalProbe] = (),
) -> TrainResult:
    from transformers import EarlyStoppingCallback, PrinterCallback

    from ft.train.callbacks import (
        CHECKPOINT_WRITE_HINT,
        CollatedTokensCallback,
        MetricsFileCallback,
        ProgressCallback,
        QuietSFTTrainer,
        StopCallback,
        StopRequest,
        Throughput,
        stop_on_signals,
    )

    cfg, run_dir = context.cfg, context.run_dir
    stop = StopCallback(StopRequest())
    throughput = Throughput()
    progress = ProgressCallback(emit, throughput)
    collator = None if cfg.rl else packed_rows_collator(cfg, tokenizer)
    # In this order: the collator's token count replaces trl's before Throughput reads it, and
    # Throughput adds tokens_per_s to the logs before metrics.jsonl and the progress see them.
    callbacks: list[Any] = [throughput, MetricsFileCallback(run_dir / METRICS_JSONL), progress, stop]
    if collator is not None:
        callbacks.insert(0, CollatedTokensCallback(collator, world_size_from_env()))
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    if cfg.rl:
        from ft.train.preference import build_preference_trainer

        trainer = build_preference_trainer(
            cfg, adapted.model, trainer_args, data, tokenizer, callbacks, reference
        )
    else:
        trainer = QuietSFTTrainer(
            model=adapted.model,
            args=trainer_args,
            train_dataset=data.train,
            eval_dataset=data.eval if data.eval is not None and len(data.eval) else None,
            processing_class=tokenizer,
            callbacks=callbacks,
            data_collator=collator,
            eval_probes=eval_probes,
        )
    # Progress goes to on_event; transformers' printer would print every log dict to stdout.
    trainer.remove_callback(PrinterCallback)
    if cfg.loraplus_lr_ratio and cfg.adapter:
        trainer.loraplus = (cfg.loraplus_lr_ratio, cfg.loraplus_lr_embedding)
    trainer.generation_eval = generation_eval_settings(cfg, tokenizer, context.terminator)
    if context.precision.compute_dtype == "float32":
        keep_trainable_in_float32(trainer.model)
    if resume_from is not None:
        emit(_note(f"resuming from {resume_from}"))
    # The first signal during the final evaluation and save is noted and the run completes; a
    # second one aborts (the last checkpoint stays resumable: run.json is written last).
    try:
        with stop_on_signals(stop.request, emit):
            with writing(run_dir, CHECKPOINT_WRITE_HINT):
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            stop.request.raise_if_aborted()
            if stop.stopped_at is not None:
                raise interrupted(run_dir, stop.stopped_at, stop.request.signal_name, context.start.launch)
            if trainer.eval_dataset is not None and _last_eval_step(trainer) != trainer.state.global_step:
                trainer.evaluate()
            result = _result(context, trainer, adapted, throughput)
            result.notes += [line for probe in eval_probes if (line := probe.summary())]
            if cfg.rl:
                from ft.train.preference import drop_reference_adapter

                drop_reference_adapter(trainer.model)
            save_run_folder(context, trainer, result)
            finish_wandb_run(trainer_args.report_to)
    except KeyboardInterrupt:  # the second signal
        raise aborted(run_dir, context.start.launch) from None
    emit(_note("run folder written", run_dir=str(run_dir)))
    return result


def finish_wandb_run(report_to: list[str]) -> None:
    """Close the W&B run, so that its files are complete when `ft train` returns (transformers'
    callback leaves that to the interpreter's exit; an offline run's history was then unwritten)."""
    if "wandb" in report_to:
        import wandb

        wandb.finish()


def generation_eval_settings(cfg: FtConfig, tokenizer: Any, terminator: str) -> Any:
    """What to generate and score at each evaluation (do_causal_lm_eval / eval_causal_lm_metrics)."""
    if not cfg.do_causal_lm_eval:
        return None
    from ft.train.generation_eval import GenerationEval

    stop = [int(tokenizer.eos_token_id), int(tokenizer.convert_tokens_to_ids(terminator))]
    # axolotl's default metrics but COMET (which needs a model of its own).
    metrics = tuple(cfg.eval_causal_lm_metrics or ("sacrebleu", "ter", "chrf", "perplexity"))
    return GenerationEval(metrics=metrics, stop_ids=tuple(dict.fromkeys(stop)))


def keep_trainable_in_float32(model: Any) -> None:
    """trl casts a k-bit model's trainable parameters to bfloat16 (QLoRA paper's recipe); on a
    CPU, bfloat16 is 10-80x slower than float32, so the float32 runs put them back."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)


def _last_eval_step(trainer: Any) -> int | None:
    steps = [row["step"] for row in trainer.state.log_history if "eval_loss" in row]
    return steps[-1] if steps else None


def _last(history: list[dict[str, Any]], key: str) -> Any:
    for row in reversed(history):
        if key in row:
            return row[key]
    return None


def _result(context: RunContext, trainer: Any, adapted: Any, throughput: Any) -> TrainResult:
    history = trainer.state.log_history
    return TrainResult(
        run_dir=context.run_dir,
        global_step=trainer.state.global_step,
        final_train_loss=_last(history, "loss"),
        final_eval_loss=_last(history, "eval_loss"),
        tokens_per_s=throughput.tokens_per_s,
        train_runtime_s=_last(history, "train_runtime"),
        trainable_params=adapted.trainable_params,
        total_params=adapted.total_params,
        notes=context.notes,
        train_tokens=throughput.tokens or None,
        train_step_seconds=throughput.step_seconds or None,
        preference=_preference_record(context.cfg, history),
    )


def _preference_record(cfg: FtConfig, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not cfg.rl:
        return None
    from ft.train.preference import rl_record

    return rl_record(cfg, history)


def save_run_folder(context: RunContext, trainer: Any, result: TrainResult) -> None:
    """Model, tokenizer, config.yml, loss.png, then run.json last (its presence marks a finished run).

    The model is saved through the trainer (a collective under FSDP/DeepSpeed, so every rank
    calls it) into a temporary folder, then moved to the top level; only rank 0 writes files.
    """
    run_dir = context.run_dir
    tmp = run_dir / FINAL_TMP
    with writing(tmp, FINAL_WRITE_HINT, any_error=True):
        trainer.save_model(str(tmp))
    if not trainer.is_world_process_zero():
        return
    name_base_portably(tmp, context.base_name)
    follow_umask(tmp)
    with writing(run_dir, FINAL_WRITE_HINT):
        _publish_run_files(context, tmp, result)


def name_base_portably(folder: Path, base_name: str) -> None:
    """The final adapter_config.json names the base by its Hub id, not a folder of this machine, so
    the adapter loads elsewhere (peft's AutoPeftModel reads it). Only the final one: while training,
    peft looks the name up at each save (a Hub request for a Hub id), so checkpoints keep the path."""
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    write_json_atomic(path, config)


FINAL_WRITE_HINT = "free some disk space, then run ft train CONFIG --resume: it writes the run folder from the last checkpoint"


def _publish_run_files(context: RunContext, tmp: Path, result: TrainResult) -> None:
    run_dir = context.run_dir
    for item in sorted(tmp.iterdir()):
        if item.name in SKIPPED_SAVE_FILES:
            continue
        target = run_dir / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    shutil.rmtree(tmp, ignore_errors=True)

    write_text_atomic(run_dir / CONFIG_YML, dump_config(context.cfg))
    plot_note = plot_loss(read_metrics(run_dir / METRICS_JSONL), run_dir / LOSS_PNG, title=run_dir.name)
    if plot_note:
        result.notes.append(plot_note)
    write_json_atomic(run_dir / RUN_JSON, run_record(context, result))
    # run.json marks the folder as ft's from now on.
    (run_dir / RUN_MARKER).unlink(missing_ok=True)
    from ft.runs.card import write_run_card

    write_run_card(run_dir, repo=context.cfg.hub_model_id)


SKIPPED_SAVE_FILES = frozenset({"training_args.bin", "README.md"})
"""training_args.bin is a pickle (run.json and config.yml say the same); README.md is a Hub model card."""


def run_record(context: RunContext, result: TrainResult) -> dict[str, Any]:
    """The content of run.json (the keys every run.json has are ft.runs.folder.RUN_KEYS)."""
    from ft import __version__
    from ft.models.precision import quantization_info
    from ft.runs.record import hardware_info, peak_memory, python_version

    cfg, start = context.cfg, context.start
    return {
        "ft_version": __version__,
        "base_model": cfg.base_model,
        "base_model_path": context.base_path,
        "base_model_name": context.base_name,
        "revision": cfg.revision,
        "adapter": cfg.adapter,
        "quantization": quantization_info(cfg, context.precision),
        "dtype": context.precision.weights_dtype(full_finetune=cfg.adapter is None),
        "prompt_format": prompt_format_name(cfg),
        "terminator": context.terminator,
        "added_tokens": context.added_tokens,
        "library_versions": library_versions(),
        "data_fingerprint": context.data_fingerprint,
        "data_content": context.data_content,
        "data": context.data_counts,
        "global_step": result.global_step,
        "final_train_loss": result.final_train_loss,
        "final_eval_loss": result.final_eval_loss,
        "tokens_per_s": result.tokens_per_s,
        "throughput": {
            "tokens": result.train_tokens,
            "step_seconds": result.train_step_seconds,
            "definition": TOKENS_PER_S_DEFINITION,
        },
        "peak_memory": peak_memory(),
        "hardware": hardware_info(),
        "python": python_version(),
        **start.launch.to_json(*start.flags),
        "run_dir": str(context.run_dir.resolve()),
        "started_at": start.started_at,
        "resumes": list(start.resumes),
        "finished_at": utc_now(),
        **({"rl": result.preference} if result.preference is not None else {}),
    }


TOKENS_PER_S_DEFINITION = (
    "real (non-padding) tokens of this session's training batches per second inside training steps "
    "(forward, backward, optimizer); evaluation, logging and checkpoint saves not counted"
)


def prompt_format_name(cfg: FtConfig) -> str:
    first = cfg.datasets[0]
    if first.format:
        return "custom"
    if first.type == "chat_template":
        return f"chat_template:{first.chat_template or cfg.chat_template or 'tokenizer_default'}"
    return first.type


def interrupted(run_dir: Path, step: int, signal_name: str | None, launch: Launch) -> TrainingInterrupted:
    checkpoint = run_dir / f"checkpoint-{step}"
    return TrainingInterrupted(
        f"training stopped by {signal_name or 'a signal'} at step {step}; checkpoint saved in {checkpoint}",
        hint=f"continue with: {launch.resume_command()}",
    )


def aborted(run_dir: Path, launch: Launch) -> TrainingInterrupted:
    newest = newest_checkpoint(run_dir)
    if newest is None:
        return TrainingInterrupted(
            "training aborted by a second signal, before its first checkpoint",
            hint="run the same command again",
        )
    return TrainingInterrupted(
        f"training aborted by a second signal; the newest complete checkpoint is {newest}",
        hint=f"continue with: {launch.resume_command()}",
    )
