"""``caprl models ...``: build the tiny local models used by tests and the CPU demo."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _models() -> None:
    """Build tiny local models (Qwen2.5-VL captioner, Qwen2 reader) for tests and the demo."""
    # A callback keeps `tiny` a named subcommand even though it is the only one.


@app.command()
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
