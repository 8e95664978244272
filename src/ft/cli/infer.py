"""`ft chat`, `ft generate`, `ft eval`. Heavy libraries are imported inside the command bodies."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from ft.base.errors import FtError

if TYPE_CHECKING:
    from ft.infer.evaluate import EvalReport
    from ft.infer.forgetting import ForgettingResult
    from ft.infer.generate import ChatSession, GenerationSettings
    from ft.infer.loading import LoadedModel

MODEL_ARG = typer.Argument(..., help="A run folder (output_dir of ft train) or a merged model folder.")
MAX_NEW_TOKENS = typer.Option(256, "--max-new-tokens", min=1, help="Most tokens to generate per answer.")
SYSTEM_OPTION = typer.Option(
    None, "--system", help="System prompt (rendered the way the format renders one)."
)
TOP_P_OPTION = typer.Option(
    1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling share (with --temperature)."
)

CHAT_HELP = "/reset: start a new conversation · /exit or /quit (or Ctrl-D): leave · /help: this text"


def _settings(max_new_tokens: int, temperature: float, top_p: float) -> GenerationSettings:
    from ft.infer.generate import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)


def _load(model_dir: Path, console: Console) -> LoadedModel:
    from ft.runs.folder import run_hub_access

    # Before the Hugging Face libraries are imported: they read the offline switch then.
    for note in run_hub_access(model_dir):
        console.print(f"[dim]{escape(note)}[/]", highlight=False)
    from ft.base.quiet import quiet_libraries
    from ft.infer.loading import load_for_inference

    quiet_libraries()
    console.print(f"[dim]loading the model in {escape(str(model_dir))}[/]", highlight=False)
    began = time.monotonic()
    with console.status("loading the model"):  # a spinner in a terminal, nothing in a file
        loaded = load_for_inference(model_dir)
    console.print(
        f"[dim]loaded in {time.monotonic() - began:.1f} s: {escape(loaded.description)}; "
        f"stops at {escape(loaded.terminator)}[/]",
        highlight=False,
    )
    return loaded


# ---------------------------------------------------------------------------------------------
# ft generate


BATCH_SIZE_HELP = "Rows per generate() call (left-padded); default: from the free memory, at most 8 on a CPU."


def generate_command(
    model_dir: Path = MODEL_ARG,
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="One prompt; the answer goes to stdout."),
    input_file: Path | None = typer.Option(
        None,
        "--input",
        "-i",
        help='JSON lines: {"prompt": ...}, {"messages": [...]} or {"instruction", "input"}; every row is '
        "checked before anything is generated.",
    ),
    output_file: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="JSON lines out: each input row plus its `generated` text (default: stdout). Written as "
        "rows finish, moved into place at the end: a failure or Ctrl-C keeps the rows done.",
    ),
    system: str | None = SYSTEM_OPTION,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0: greedy, deterministic."),
    top_p: float = TOP_P_OPTION,
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help=BATCH_SIZE_HELP),
) -> None:
    """Generate answers for scripts: one prompt, or one JSON line out per JSON line in, in batches."""
    from ft.base.signals import raise_on_signals
    from ft.cli.progress import StageProgress
    from ft.infer.generate import (
        InputRow,
        batches,
        default_batch_size,
        generate_batch,
        read_input_rows,
        render_input_rows,
    )

    if (prompt is None) == (input_file is None):
        raise FtError(
            "give either --prompt TEXT or --input FILE.jsonl", hint="ft generate RUN_DIR --prompt 'Hi'"
        )
    # Every row is read and checked before the model loads, and rendered before anything is generated.
    rows = [InputRow(0, {"prompt": prompt})] if input_file is None else read_input_rows(input_file)
    console = Console(stderr=True, soft_wrap=True)
    loaded = _load(model_dir, console)
    prompts = render_input_rows(loaded, rows, system, str(input_file or "--prompt"))
    settings = _settings(max_new_tokens, temperature, top_p)
    if input_file is None:
        typer.echo(generate_batch(loaded.model, loaded, prompts, settings)[0])
        return
    size = batch_size or default_batch_size(loaded.model, max(map(len, prompts)), max_new_tokens)
    console.print(f"[dim]{len(rows)} row(s) in batches of {size}[/]", highlight=False)
    with (
        raise_on_signals(generate_stopped),
        PartialOutput(output_file, len(rows), console) as out,
        StageProgress(console) as progress,
    ):
        for chunk in batches(len(rows), size):
            answers = generate_batch(loaded.model, loaded, [prompts[i] for i in chunk], settings)
            out.write_rows(
                [{**rows[i].data, "generated": answer} for i, answer in zip(chunk, answers, strict=True)]
            )
            progress("generate", chunk.stop, len(rows))
    if output_file is not None:
        console.print(f"wrote {len(rows)} line(s) to {escape(str(output_file))}", highlight=False)


def generate_stopped(signal_name: str) -> Exception:
    from ft.base.errors import TrainingInterrupted

    return TrainingInterrupted(f"ft generate stopped by {signal_name}", hint="run the same command again")


class PartialOutput:
    """stdout, or --output written through a temporary name as rows finish: at the end, complete or
    not (a row failed, Ctrl-C), the rows written so far are moved into place in one rename."""

    def __init__(self, path: Path | None, total: int, console: Console) -> None:
        self.path = path
        self.total = total
        self.console = console
        self.tmp = path.with_name(f".{path.name}.tmp") if path is not None else None
        self.handle: TextIO | None = None
        self.written = 0

    def __enter__(self) -> PartialOutput:
        if self.tmp is not None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.tmp.open("w", encoding="utf-8")
        return self

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if self.handle is None:
            typer.echo(text, nl=False)
        else:
            self.handle.write(text)
            self.handle.flush()
        self.written += len(rows)

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if self.handle is None or self.tmp is None or self.path is None:
            return
        self.handle.close()
        if kind is not None and self.written == 0:
            self.tmp.unlink(missing_ok=True)
            return
        self.tmp.replace(self.path)
        if kind is not None:
            self.console.print(
                f"[yellow]kept the {self.written} of {self.total} row(s) generated before the stop in "
                f"{escape(str(self.path))}[/]",
                highlight=False,
            )


# ---------------------------------------------------------------------------------------------
# ft chat


def chat_command(
    model_dir: Path = MODEL_ARG,
    system: str | None = SYSTEM_OPTION,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="Sampling temperature; 0: greedy."),
    top_p: float = TOP_P_OPTION,
) -> None:
    """Talk to a run or a merged model, multi-turn, in the format it was trained on.

    In the chat: /reset starts a new conversation; /exit or /quit (or Ctrl-D) leaves; /help shows these.
    """
    from ft.infer.generate import ChatSession

    console = Console(soft_wrap=True, highlight=False)
    loaded = _load(model_dir, console)
    session = ChatSession(loaded, _settings(max_new_tokens, temperature, top_p), system=system)
    console.print(f"[dim]{CHAT_HELP}[/]")
    _enable_line_editing()
    while True:
        line = _read_line()
        if line is None or line.strip() in ("/exit", "/quit"):
            break
        _chat_turn(console, session, line.strip())


def _chat_turn(console: Console, session: ChatSession, text: str) -> None:
    """One input line: a /command, or a user turn answered with streamed tokens."""
    if not text:
        return
    if text == "/reset":
        session.reset()
        console.print("[dim](new conversation)[/]")
    elif text in ("/help", "/?"):
        console.print(f"[dim]{CHAT_HELP}[/]")
    elif text.startswith("/"):
        console.print(f"[yellow]unknown command {escape(text)}[/] [dim]({CHAT_HELP})[/]")
    else:
        console.print("[bold cyan]assistant>[/] ", end="")
        session.reply(text, on_text=lambda piece: console.print(piece, end="", markup=False))
        console.print()


def _read_line() -> str | None:
    """One line from the user; None at end of input (Ctrl-D)."""
    try:
        return input("you> ")
    except EOFError:
        return None


def _enable_line_editing() -> None:
    """Arrow keys and history for input() on a terminal (readline is missing on some platforms)."""
    import sys

    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401


# ---------------------------------------------------------------------------------------------
# ft eval


def eval_command(
    target: Path = typer.Argument(..., help="A run folder, or the config whose output_dir holds the run."),
    compare_base: bool = typer.Option(
        False,
        "--compare-base",
        help="Also evaluate the base model (no adapter) on the same rows; for preference runs, the "
        "reference they trained against.",
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Only the first N held-out rows."),
    max_new_tokens: int | None = typer.Option(
        None,
        "--max-new-tokens",
        min=1,
        help="Most tokens per generated answer (default: twice the longest reference answer, 16 to 256).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Rows per forward pass and per generate() call (default: the config's eval_batch_size or "
        "micro_batch_size for the loss; from the free memory, at most 8 on a CPU, for generation).",
    ),
    forgetting: bool = typer.Option(
        False,
        "--forgetting",
        help="Also measure drift from the base model on ft's 222 general prompts and general text: "
        "KL per token, log-likelihood, unchanged greedy answers, perplexity, a verdict.",
    ),
) -> None:
    """Eval loss, perplexity and generation metrics (ROUGE-1/2/L, BLEU, exact match) on the held-out split;
    for preference runs also the chosen-over-rejected log-probability margin and accuracy."""
    from ft.cli.progress import StageProgress
    from ft.config.hub import EVAL_NEEDS, prepare_hub_access
    from ft.infer.evaluate import EVAL_JSON, EvalSettings, resolve_target, run_eval

    console = Console(soft_wrap=True, highlight=False)
    settings = EvalSettings(
        limit=limit,
        compare_base=compare_base,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        forgetting=forgetting,
    )

    def note(line: str) -> None:
        console.print(f"[dim]{escape(line)}[/]")

    # Before the Hugging Face libraries are imported: they read the offline switch then.
    cfg, run = resolve_target(target)
    for line in prepare_hub_access(cfg.model_copy(update={"base_model": run.base_model_path}), EVAL_NEEDS):
        note(line)
    from ft.base.quiet import quiet_libraries

    quiet_libraries()

    with StageProgress(console) as progress:
        if cfg.rl:
            from ft.infer.pair_eval import run_pair_eval

            report = run_pair_eval(target, settings, progress, note)
        else:
            report = run_eval(target, settings, progress, note)
    show_eval(console, report)
    console.print(f"report: {report.run_dir / EVAL_JSON}")


METRIC_ROWS = (
    ("loss", "eval loss", ".4f"),
    ("perplexity", "perplexity", ".3f"),
    ("rouge1", "ROUGE-1", ".4f"),
    ("rouge2", "ROUGE-2", ".4f"),
    ("rougeL", "ROUGE-L", ".4f"),
    ("bleu", "BLEU", ".2f"),
    ("exact_match", "exact match", ".3f"),
    ("margin", "pair margin, log p(chosen) - log p(rejected)", ".4f"),
    ("accuracy", "pairs with chosen likelier", ".3f"),
    ("chosen_logp", "log p(chosen)", ".4f"),
    ("rejected_logp", "log p(rejected)", ".4f"),
)


def show_eval(console: Console, report: EvalReport) -> None:
    """The metrics as a table: base and tuned side by side when the base was evaluated."""
    from rich.table import Table

    models = {"tuned": report.tuned.to_json()}
    if report.base is not None:
        models = {report.base_label: report.base.to_json(), **models}
    table = Table(title=f"{report.rows} held-out row(s) · {report.split}", title_justify="left")
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for key, label, spec in METRIC_ROWS:
        values = [_metric(data, key) for data in models.values()]
        table.add_row(label, *(format(v, spec) if v is not None else "-" for v in values))
    console.print(table)
    if report.rewards is not None:
        rewards = report.rewards
        console.print(
            f"DPO implicit reward (beta {rewards['beta']:g} x margin gained over the reference): "
            f"mean {rewards['margin']:.4f}, positive on {rewards['accuracy']:.3f} of the pairs",
            highlight=False,
        )
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    if report.forgetting is not None:
        show_forgetting(console, report.forgetting)


def show_forgetting(console: Console, result: ForgettingResult) -> None:
    """Drift from the base on general prompts, overall and per category, then the verdict line."""
    from rich.table import Table

    table = Table(title="forgetting: general prompts and text, base -> tuned", title_justify="left")
    for column in ("prompts", "n", "KL nats/token", "log-lik base", "log-lik tuned", "unchanged"):
        table.add_column(column, justify="left" if column == "prompts" else "right")
    rows = {"all": _forgetting_cells(result.to_json()), **result.by_category}
    for name, values in rows.items():
        table.add_row(
            name,
            str(int(values["prompts"])),
            f"{values['kl']:.4f}",
            f"{values['base_logprob']:.3f}",
            f"{values['tuned_logprob']:.3f}",
            f"{values['unchanged']:.0%}",
        )
    console.print(table)
    console.print(
        f"general-text perplexity: base {result.base_perplexity:.3f}, tuned {result.tuned_perplexity:.3f} "
        f"({result.perplexity_increase:+.1%})",
        highlight=False,
    )
    console.print(f"[bold]verdict:[/] {escape(result.summary())}", highlight=False)


def _forgetting_cells(data: dict[str, Any]) -> dict[str, float]:
    return {key: data[key] for key in ("prompts", "kl", "base_logprob", "tuned_logprob", "unchanged")}


def _metric(data: dict[str, Any], key: str) -> float | None:
    if key in data:
        return float(data[key])
    for group in ("metrics", "pairs"):
        values = data.get(group) or {}
        if key in values:
            return float(values[key])
    return None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("generate")(generate_command)
    app.command("chat")(chat_command)
    app.command("eval")(eval_command)
