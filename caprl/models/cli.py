"""``caprl models ...``: build the tiny local models used by tests and the CPU demo."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_show_locals=False)


@app.callback()
def _models() -> None:
    """Build tiny local models (Qwen2.5-VL captioner, Qwen2 reader) for tests and the demo."""
    # A callback keeps `tiny` a named subcommand even though it is the only one.


@app.command(short_help="A tiny Qwen2.5-VL captioner and Qwen2 reader.")
def tiny(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory; gets captioner/, reader/, tiny_models.json."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random weights (the tokenizer does not depend on it)."),
) -> None:
    """Build a tiny Qwen2.5-VL captioner and Qwen2 reader from configs, with a locally trained tokenizer."""
    from transformers.utils import logging as hf_logging

    from caprl.models.tiny import build_tiny_models  # lazy: keeps `caprl --help` fast

    hf_logging.disable_progress_bar()  # one-shard "Writing model shards" bars are noise here
    start = time.perf_counter()
    models = build_tiny_models(out, seed=seed)
    info = json.loads(models.manifest.read_text())
    typer.echo(f"captioner: {models.captioner} ({info['captioner']['params']:,} params)")
    typer.echo(f"reader:    {models.reader} ({info['reader']['params']:,} params)")
    typer.echo(f"vocab: {info['vocab_size']} tokens, seed {seed}, built in {time.perf_counter() - start:.1f} s")


@app.command("train-reader", short_help="Train the tiny reader on shapes-world MCQs (cached).")
def train_reader_command(
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder that receives tiny-reader-<hash>/ (default: $CAPRL_CACHE or ~/.cache/caprl).",
    ),
    base: Path | None = typer.Option(
        None, "--base", help="Tiny reader to start from (e.g. DIR/reader from `caprl models tiny`); default: built."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights, the training items and the option shuffles."),
    steps: int = typer.Option(None, "--steps", min=1, help="Optimizer steps [default: the recipe's]."),
    captions_per_step: int = typer.Option(None, "--captions-per-step", min=1, help="Captions per batch."),
    questions_per_caption: int = typer.Option(None, "--questions-per-caption", min=1, help="MCQs per caption."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (AdamW, warmup then cosine decay)."),
    eval_items: int = typer.Option(None, "--eval-items", min=0, help="Held-out items to evaluate on (0: skip)."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads [default: torch's]."),
    force: bool = typer.Option(False, "--force", help="Retrain even if a reader with these settings is cached."),
    device: str = typer.Option("cpu", "--device", help="torch device to train on (cpu, cuda, cuda:1, ...)."),
) -> None:
    """Train the tiny reader to answer shapes-world MCQs from captions (cached per settings).

    Examples are (caption, shuffled MCQ -> gold letter) with captions at every reference level and empty, rendered
    exactly as the reward renders them. Prints held-out accuracy per caption level against chance.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from caprl.models.train_reader import ReaderTrainSettings, train_reader_result  # lazy: keeps --help fast

    hf_logging.disable_progress_bar()
    overrides = {
        k: v
        for k, v in dict(
            steps=steps,
            captions_per_step=captions_per_step,
            questions_per_caption=questions_per_caption,
            lr=lr,
            eval_items=eval_items,
        ).items()
        if v is not None
    }
    settings = ReaderTrainSettings(seed=seed, **overrides)
    console = Console()
    columns = (
        TextColumn("[bold]train reader"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=settings.steps, loss=float("nan"))
        ema: list[float] = []

        def on_step(step: int, total: int, loss: float) -> None:
            ema.append(loss if not ema else 0.9 * ema[-1] + 0.1 * loss)
            bar.update(task, completed=step, loss=ema[-1])

        result = train_reader_result(
            out, base=base, settings=settings, threads=threads, progress=on_step, force=force, device=device
        )
    _print_reader_report(console, result)


def _print_reader_report(console, result) -> None:
    from rich.table import Table

    m = result.manifest
    where = "cached" if result.cached else f"trained in {m['total_wall_s']:.0f} s"
    console.print(f"reader: {result.path} ({m['params']:,} params, {where})")
    heldout = m.get("heldout")
    if not heldout:
        return
    table = Table(title=f"held-out accuracy ({heldout['n_items']} items, {heldout['stream']} seed {heldout['seed']})")
    for col in ("caption", "questions", "accuracy", "chance", "soft reward", "letter mass"):
        table.add_column(col, justify="left" if col == "caption" else "right")
    for level, d in heldout["levels"].items():
        table.add_row(
            level,
            str(d["questions"]),
            f"{d['accuracy']:.3f}",
            f"{d['chance']:.3f}",
            f"{d['soft']:.3f}",
            f"{d['letter_mass']:.3f}",
        )
    console.print(table)
