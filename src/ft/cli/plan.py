"""`ft plan`: memory and time of a run before renting a GPU. Heavy libraries load inside the command."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ft.base.errors import FtError

if TYPE_CHECKING:
    from ft.plan.estimate import GpuFit, Plan

GIB = 2**30
"""ft.plan.memory's unit, not imported from it: that module pulls the schema in, and `ft --help`
imports this one."""
MAX_MEMORY_GIB = 16384
"""--memory above this (16 TiB, more than any one machine's GPUs) is taken for a typo."""
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb|m)?\s*$", re.IGNORECASE)


def parse_memory(text: str) -> int:
    """'24GB', '24GiB', '24' -> bytes. A GPU's "24 GB" is 24 GiB, so GB and GiB both mean 2^30 here."""
    match = SIZE.match(text)
    if not match:
        raise FtError(f"--memory: cannot read {text!r}", hint="write a size such as 24GB or 40GiB")
    value, unit = float(match.group(1)), (match.group(2) or "gb").lower()
    size = int(value * (GIB if unit.startswith("g") else 2**20))
    if not 2**20 <= size <= MAX_MEMORY_GIB * GIB:
        raise FtError(
            f"--memory: {text!r} is not a GPU memory size",
            hint=f"give a size from 1 MiB to {MAX_MEMORY_GIB} GiB, such as 24GB",
        )
    return size


def _gib(value: int | float) -> str:
    return f"{value / GIB:.2f} GiB"


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1 / 3600:
        return "<1 s"
    if value < 1 / 60:
        return f"{value * 3600:.0f} s"
    return f"{value * 60:.0f} min" if value < 1 else f"{value:.1f} h"


def plan_command(
    config: Path = typer.Argument(..., help="The run's YAML config."),
    gpu: str | None = typer.Option(
        None, "--gpu", help="A GPU of the table: T4, L4, 'RTX 4090', 'A100 40GB', L40S, 'A100 80GB', H100."
    ),
    memory: str | None = typer.Option(None, "--memory", help="A custom memory budget, e.g. 24GB."),
    mfu: float = typer.Option(0.4, "--mfu", min=0.01, max=1.0, help="Assumed utilisation of peak FLOPs."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as one JSON object."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config key: --set key=value (repeatable)."
    ),
) -> None:
    """Parameters, memory line by line and training time of a run, before any weights load.

    The exit status is 0 whether or not the run fits: the plan is a report (--json has `fits`).
    """
    from ft.config.hub import prepare_hub_access
    from ft.config.load import read_config

    budget = parse_memory(memory) if memory is not None else None
    # No file checks: a plan needs the model's config.json, not its weights; a missing local
    # dataset only makes the token count an estimate (said in the output).
    cfg, _ = read_config(config, overrides, check_files=False)
    from ft.plan.estimate import build_plan, pick_gpu

    pick_gpu(gpu)  # an unknown --gpu is said before anything is read
    notes = Console(stderr=True, soft_wrap=True)
    for note in prepare_hub_access(cfg, ("config",)):
        notes.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    plan = build_plan(cfg, gpu=gpu, memory_bytes=budget, mfu=mfu)
    if as_json:
        typer.echo(json.dumps(plan.to_json(), indent=2))
        return
    print_plan(plan, Console(soft_wrap=True))


def print_plan(plan: Plan, console: Console) -> None:
    params = plan.parameters
    console.print(
        f"[bold]{escape(plan.base_model)}[/] ({plan.model_type}, architecture from "
        f"{escape(plan.architecture_source)})",
        highlight=False,
    )
    kinds = ", ".join(f"{k} {v:,}" for k, v in params.items() if k != "total" and v)
    console.print(f"parameters {params['total']:,}: {kinds}", highlight=False)
    if plan.adapter:
        a = plan.adapter
        what = (
            f"a soft prompt of {a['virtual_tokens']} virtual tokens ({a['kind']}, {a['init']} start)"
            if "virtual_tokens" in a
            else f"{a['kind']} r={a['rank']} on {a['wrapped_layers']} layers ({', '.join(a['targets'])})"
        )
        console.print(
            f"trainable {plan.trainable_parameters:,} ({plan.trainable_parameters / params['total']:.2%}): {what}",
            highlight=False,
        )
    else:
        console.print(f"trainable {plan.trainable_parameters:,} (full fine-tune)", highlight=False)
    console.print(
        f"weights {plan.precision['weights']}; compute {plan.precision['compute_dtype']}", highlight=False
    )
    table = Table(title="GPU memory at the peak of a training step", title_justify="left")
    table.add_column("")
    table.add_column("GiB", justify="right")
    table.add_column("how", style="dim")
    for line in plan.memory:
        table.add_row(line.label, f"{line.bytes / GIB:.2f}", line.note)
    table.add_row("[bold]total[/]", f"[bold]{plan.total_bytes / GIB:.2f}[/]", "")
    console.print(table)
    console.print(_gpu_table(plan))
    for note in _other_precisions(plan):
        console.print(escape(note), highlight=False)
    console.print(f"tokens: {plan.tokens.how}", highlight=False)
    console.print(f"training FLOPs = {plan.flops_formula}", highlight=False)
    if plan.budget is not None:
        _print_budget(plan.budget, plan.total_bytes, console)
    for assumption in plan.assumptions:
        console.print(f"[dim]assumed: {escape(assumption)}[/]", highlight=False)


def _gpu_table(plan: Plan) -> Table:
    table = Table(title=f"GPUs (time at {plan.mfu:.0%} of peak)", title_justify="left")
    for column in ("GPU", "memory", "fits", "peak TFLOPs", "time", "per 1M tokens"):
        table.add_column(column, justify="left" if column == "GPU" else "right")
    chosen = plan.budget.name if plan.budget is not None else None
    for fit in plan.gpus:  # the --gpu asked for is first
        table.add_row(
            f"{fit.name} (--gpu)" if fit.name == chosen else fit.name,
            f"{fit.memory_bytes / GIB:.0f} GiB",
            _fits(fit),
            f"{fit.tflops:g}" if fit.tflops else "-",
            _hours(fit.hours),
            _hours(fit.hours_per_million_tokens),
        )
    return table


def _fits(fit: GpuFit) -> str:
    if fit.why_not:
        return f"[red]no ({escape(fit.why_not)})[/]"
    return "[green]yes[/]" if fit.fits else "[red]no[/]"


def _other_precisions(plan: Plan) -> list[str]:
    """A line for each group of GPUs whose precision, so whose total, differs from the lines shown."""
    groups: dict[tuple[str, int], list[str]] = {}
    for fit in plan.gpus:
        if fit.compute_dtype and fit.needs_bytes is not None and fit.needs_bytes != plan.total_bytes:
            groups.setdefault((fit.compute_dtype, fit.needs_bytes), []).append(fit.name)
    return [
        f"on {', '.join(names)} the run computes in {dtype} and needs {_gib(needs)}"
        for (dtype, needs), names in groups.items()
    ]


def _print_budget(fit: GpuFit, total: int, console: Console) -> None:
    left = fit.memory_bytes - total
    verdict = "[green]fits[/]" if fit.fits else "[red]does not fit[/]"
    room = f"{_gib(left)} to spare" if left >= 0 else f"{_gib(-left)} short"
    console.print(f"{escape(fit.name)} ({_gib(fit.memory_bytes)}): {verdict}, {room}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("plan")(plan_command)
