"""Export: a run's adapter folded into full weights, and the model written for other tools.

Owns `ft merge` (`merge`: in memory, verified against base+adapter) and the tensor-by-tensor
streaming merge (`merge_stream`).

May import: `ft.models`, `ft.runs`, `ft.data`, `ft.config`, `ft.base`; no other stage, never `ft.cli`.
"""
