"""Planning: the memory and the time of a run, before renting a GPU; no weights are loaded.

Owns the architecture read on the meta device (`architecture`), the memory formulas and GPU table
(`memory`), token counting (`tokens`) and the plan itself (`estimate`).

May import: `ft.models`, `ft.data`, `ft.config`, `ft.base`; no other stage, never `ft.cli`.
"""
