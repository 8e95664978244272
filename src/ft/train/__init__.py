"""Training: `ft train` from a config to a finished run folder.

Owns the runner (`runner`: data, model, adapter, trainer, run folder), the trl SFTConfig and
environment settings (`settings`), trainer callbacks (`callbacks`: metrics, progress, Ctrl-C; LoRA+
and generation metrics at evaluation, `generation_eval`), the output_dir of a run (`output_dir`:
start, resume, --force, auto-resume), what a resume compares (`resume`: the saved config and the
data, --allow-changes), and what an `accelerate launch` asked for (`launch`: FSDP / DeepSpeed
settings checked before the model loads).

May import: `ft.models`, `ft.runs`, `ft.data`, `ft.config`, `ft.base`; no other stage, never `ft.cli`.
"""
