"""Inference: loading a run or merged folder for use, generation, chat, and `ft eval`.

Owns loading for inference (`loading`), rendering and generation (`generate`), evaluation on the
held-out split (`evaluate`) and the generation metrics (`metrics`).

May import: `ft.models`, `ft.runs`, `ft.data`, `ft.config`, `ft.base`; no other stage, never `ft.cli`.
"""
