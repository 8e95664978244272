"""Run folders: their layout and files, run.json, checkpoints, and which folders ft owns.

Owns the run folder's file names, run.json, atomic writes, checkpoints and the loss plot
(`folder`), what run.json records of how and where the run ran (`record`: command line, git
commit, hardware, peak memory), output-folder ownership, replacement and write failures
(`outdir`), model cards (`card`: README.md from run.json, written by train, eval and merge) and
the Hub upload (`hub`: ft push and hub_model_id; the token from the environment only).

May import: `ft.config`, `ft.base` (and `ft.data` below). Used by train, infer and export.
"""
