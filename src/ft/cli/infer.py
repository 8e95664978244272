"""`ft chat`, `ft generate`, `ft eval`. Heavy libraries are imported inside the command bodies."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
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
    from ft.base.quiet import quiet_libraries
    from ft.infer.loading import load_for_inference

    quiet_libraries()
    with console.status("loading the model"):
        loaded = load_for_inference(model_dir)
    console.print(
        f"[dim]{escape(loaded.description)}; stops at {escape(loaded.terminator)}[/]", highlight=False
    )
    return loaded


# ---------------------------------------------------------------------------------------------
# ft generate


def generate_command(
    model_dir: Path = MODEL_ARG,
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="One prompt; the answer goes to stdout."),
    input_file: Path | None = typer.Option(
        None,
        "--input",
        "-i",
        help='JSON lines: {"prompt": ...}, {"messages": [...]} or {"instruction", "input"}.',
    ),
    output_file: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="JSON lines out: each input row plus its `generated` text (default: stdout).",
    ),
    system: str | None = SYSTEM_OPTION,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0: greedy, deterministic."),
    top_p: float = TOP_P_OPTION,
) -> None:
    """Generate answers for scripts: one prompt, or one JSON line out per JSON line in."""
    from ft.infer.generate import generate, render_row

    if (prompt is None) == (input_file is None):
        raise FtError(
            "give either --prompt TEXT or --input FILE.jsonl", hint="ft generate RUN_DIR --prompt 'Hi'"
        )
    rows = [{"prompt": prompt}] if prompt is not None else list(read_rows(input_file))  # type: ignore[arg-type]
    console = Console(stderr=True, soft_wrap=True)
    loaded = _load(model_dir, console)
    settings = _settings(max_new_tokens, temperature, top_p)
    with _output(output_file) as out:
        for number, row in enumerate(rows, start=1):
            text = generate(loaded, render_row(loaded, row, system), settings)
            if prompt is not None:
                out.write(text + "\n")
            else:
                out.write(json.dumps({**row, "generated": text}, ensure_ascii=False) + "\n")
                out.flush()
            if output_file is not None:
                console.print(f"[dim]{number}/{len(rows)}[/]", highlight=False)
    if output_file is not None:
        console.print(f"wrote {len(rows)} line(s) to {output_file}", highlight=False)


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Objects of a JSON-lines file; a bad line is an FtError naming its line number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise FtError(f"--input: cannot read {path}: {err.strerror or err}") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise FtError(f"{path} line {number}: not JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise FtError(f"{path} line {number}: a JSON object is needed, got {type(row).__name__}")
        yield row


class _output:
    """stdout, or a file written through a temporary name so a failed run leaves no half file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp") if path is not None else None
        self.handle: TextIO | None = None

    def __enter__(self) -> TextIO:
        import sys

        if self.tmp is None:
            return sys.stdout
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.tmp.open("w", encoding="utf-8")
        return self.handle

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if self.handle is None or self.tmp is None or self.path is None:
            return
        self.handle.close()
        if kind is None:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# ft chat


def chat_command(
    model_dir: Path = MODEL_ARG,
    system: str | None = SYSTEM_OPTION,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="Sampling temperature; 0: greedy."),
    top_p: float = TOP_P_OPTION,
) -> None:
    """Talk to a run or a merged model, multi-turn, in the format it was trained on."""
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
        False, "--compare-base", help="Also evaluate the base model (no adapter) on the same rows."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Only the first N held-out rows."),
    max_new_tokens: int = typer.Option(
        128, "--max-new-tokens", min=1, help="Most tokens per generated answer."
    ),
    forgetting: bool = typer.Option(
        False,
        "--forgetting",
        help="Also measure drift from the base model on ft's 222 general prompts and general text: "
        "KL per token, log-likelihood, unchanged greedy answers, perplexity, a verdict.",
    ),
) -> None:
    """Eval loss, perplexity and generation metrics (ROUGE-1/2/L, BLEU, exact match) on the held-out split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ft.base.quiet import quiet_libraries
    from ft.infer.evaluate import EVAL_JSON, EvalSettings, run_eval

    quiet_libraries()
    console = Console(soft_wrap=True, highlight=False)
    settings = EvalSettings(
        limit=limit, compare_base=compare_base, max_new_tokens=max_new_tokens, forgetting=forgetting
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    tasks: dict[str, Any] = {}
    with Progress(*columns, console=console, transient=True) as bar:

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        report = run_eval(target, settings, on_progress)
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
)


def show_eval(console: Console, report: EvalReport) -> None:
    """The metrics as a table: base and tuned side by side when the base was evaluated."""
    from rich.table import Table

    models = {"tuned": report.tuned.to_json()}
    if report.base is not None:
        models = {"base": report.base.to_json(), **models}
    table = Table(title=f"{report.rows} held-out row(s) · {report.split}", title_justify="left")
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for key, label, spec in METRIC_ROWS:
        values = [_metric(data, key) for data in models.values()]
        table.add_row(label, *(format(v, spec) if v is not None else "-" for v in values))
    console.print(table)
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
    metrics = data.get("metrics") or {}
    return float(metrics[key]) if key in metrics else None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("generate")(generate_command)
    app.command("chat")(chat_command)
    app.command("eval")(eval_command)
