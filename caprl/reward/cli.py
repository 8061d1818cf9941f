"""``caprl reward``: score captions with the CapRL reward."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.callback()
def _group() -> None:
    """Score captions by how well a text-only reader answers each item's MCQs from them."""


@app.command("score")
def score_command(
    data: Path = typer.Option(..., "--data", help="caprl dataset (directory or samples file) holding the MCQs."),
    captions: Path = typer.Option(..., "--captions", help='jsonl of {"id": SAMPLE_ID, "caption": TEXT} rows.'),
    reader: str = typer.Option(..., "--reader", help="Reader model id/path, or an OpenAI-compatible server URL."),
    out: Path = typer.Option(..., "--out", help="Output jsonl (appended; re-runs skip captions already scored)."),
    backend: str | None = typer.Option(None, help="transformers | openai | vllm (default: from --reader)."),
    model: str | None = typer.Option(None, help="Model name to request from an OpenAI-compatible server."),
    mode: str = typer.Option("hard", help="hard (chosen letter is gold) | soft (gold probability) | blind_gain."),
    n: int | None = typer.Option(None, "--n", help="Questions per caption, drawn with replacement (default: all)."),
    path: str = typer.Option("score", help="score (letter probabilities) | generate (free text, parsed)."),
    no_unanswerable: bool = typer.Option(False, help="Do not append the 'cannot be answered' option."),
    length_weight: float = typer.Option(0.0, help="Weight of the length term (needs --length-tokenizer)."),
    length_tokenizer: str | None = typer.Option(None, help="Tokenizer that counts caption tokens (the policy's)."),
    timestamp_weight: float = typer.Option(0.0, help="Weight of the video timestamp-format term."),
    seed: int = typer.Option(0, help="Seed for question draws, shuffles and sampled letters."),
    batch_size: int = typer.Option(32, help="Captions per engine call."),
) -> None:
    """Score CAPTIONS against the MCQs in DATA with a text-only reader; write one result per caption."""
    from caprl.readers import load_reader
    from caprl.reward.batch import score_captions
    from caprl.reward.engine import RewardConfig, RewardEngine

    config = RewardConfig(
        mode=mode,
        n_questions=n,
        path=path,
        unanswerable_option=not no_unanswerable,
        length_weight=length_weight,
        timestamp_weight=timestamp_weight,
        seed=seed,
    )
    count_tokens = None
    if length_tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(length_tokenizer)
        count_tokens = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    kwargs = {"model": model} if model else {}
    engine = RewardEngine(load_reader(reader, backend=backend, **kwargs), config, count_tokens=count_tokens)
    with Progress(
        TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        task = progress.add_task("score", total=None)

        def on_progress(advance: int, total: int) -> None:
            progress.update(task, total=total, advance=advance)

        summary = score_captions(data, captions, engine, out, batch_size=batch_size, on_progress=on_progress)
    table = Table(title=f"reward ({mode}) -> {out}")
    for col in ("scored", "already done", "bad rows", "mean reward", "mean accuracy", "parse failures"):
        table.add_column(col, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    table.add_row(
        str(summary.scored),
        str(summary.skipped_existing),
        str(len(summary.bad_rows)),
        fmt(summary.mean_reward),
        fmt(summary.mean_accuracy),
        str(summary.parse_failures),
    )
    console.print(table)
    for msg in summary.bad_rows[:5]:
        console.print(f"[yellow]skipped[/] {msg}")
