"""The `ft` command: the typer app and the one error boundary (`app`), and one module per command
group (`data`: validate, format, preprocess; `train`; `infer`: chat, generate, eval; `export`:
merge; `plan`), and progress that is a bar in a terminal and plain lines in a file (`progress`).
The only layer that prints.

May import everything below it, but only inside command bodies for anything heavier than typer
and rich: `ft --help` must not import torch, transformers or pydantic.
"""
