"""Inference: loading a run or merged folder for use, generation, chat, and `ft eval`.

Owns loading for inference (`loading`), rendering and generation (`generate`), evaluation on the
held-out split (`evaluate`; the text metrics are `ft.data.metrics`, which training uses too).

May import: `ft.models`, `ft.runs`, `ft.data`, `ft.config`, `ft.base`; no other stage, never `ft.cli`.
"""
