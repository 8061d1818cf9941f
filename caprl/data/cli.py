"""``caprl data``: import public CapRL data, export to verl, inspect datasets. Thin shells over library calls."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from caprl.data.containers import open_rows
from caprl.data.export import DEFAULT_ABILITY, export_verl
from caprl.data.importers import ERRORS_NAME, ImportResult, import_dataset
from caprl.data.inspect import inspect_dataset, render_sample, render_stats
from caprl.schema import SchemaError

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Import, export and inspect caprl datasets (a directory with samples.parquet|jsonl, media/, dataset.json).",
    pretty_exceptions_show_locals=False,
)

SHOW_ERRORS = 5
PROGRESS_MIN_ROWS = 1000  # below this a progress bar only flickers


class ImportFormat(str, Enum):
    caprl_qa = "caprl-qa"
    caprl_video_qa = "caprl-video-qa"
    caprl_v1 = "caprl-v1"
    verl = "verl"


class ExportFormat(str, Enum):
    verl = "verl"


class FileFormat(str, Enum):
    parquet = "parquet"
    jsonl = "jsonl"


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code=1)


def _print_import_summary(console: Console, result: ImportResult, out: Path) -> None:
    console.print(
        f"imported {result.n_imported} samples, skipped {result.n_skipped} of {result.n_rows} rows"
        + (f" -> {result.output}" if result.output else "")
    )
    for err in result.errors[:SHOW_ERRORS]:
        console.print(f"  skipped {err}", markup=False)
    if result.n_skipped > SHOW_ERRORS:
        console.print(f"  ... and {result.n_skipped - SHOW_ERRORS} more")
    if result.errors and result.output:
        console.print(f"  all skipped rows: {out / ERRORS_NAME}", markup=False)


@app.command("import", short_help="Import a public CapRL dataset (caprl-qa, caprl-v1, verl, ...).")
def import_command(
    input: str = typer.Argument(
        ..., help="Parquet/jsonl/json file, a directory of them, or a datasets.save_to_disk directory."
    ),
    from_: ImportFormat = typer.Option(..., "--from", help="Source format."),
    out: Path = typer.Option(..., "--out", help="Output dataset directory."),
    media_root: Path | None = typer.Option(
        None, "--media-root", help="Directory that relative image/video paths resolve against."
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad row (exit code 1)."),
    split: str | None = typer.Option(None, "--split", help="Split to read from a multi-split dataset."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Read at most this many input rows."),
    extract_media: bool = typer.Option(
        False, "--extract-media", help="Write embedded image bytes to OUT/media/ instead of keeping them inline."
    ),
    file_format: FileFormat = typer.Option(FileFormat.parquet, "--format", help="Output file type."),
) -> None:
    """Import a public CapRL dataset (caprl-qa, caprl-video-qa, caprl-v1, or a verl parquet) into OUT."""
    console = _console()
    try:
        rows = open_rows(input, split=split)
        total = min(rows.total, limit) if rows.total is not None and limit else rows.total
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=total is None or total < PROGRESS_MIN_ROWS,
        ) as progress:
            task = progress.add_task("rows", total=total)
            result = import_dataset(
                input,
                from_.value,
                out,
                media_root=media_root,
                strict=strict,
                split=split,
                limit=limit,
                extract=extract_media,
                file_format=file_format.value,
                on_row=lambda _i: progress.advance(task),
                rows=rows,
            )
    except SchemaError as exc:
        raise _fail(f"bad input row ({exc}); nothing written") from None
    except (ValueError, FileNotFoundError, TypeError) as exc:
        raise _fail(str(exc)) from None
    _print_import_summary(console, result, out)
    if not result.samples:
        raise _fail(f"no row of {input} could be imported as {from_.value}; nothing written")


@app.command("export", short_help="Export a caprl dataset to verl's parquet layout.")
def export_command(
    dataset: Path = typer.Argument(..., help="caprl dataset directory (or its samples.parquet/jsonl)."),
    to: ExportFormat = typer.Option(ExportFormat.verl, "--to", help="Target layout."),
    out: Path = typer.Option(..., "--out", help="Output file (.parquet)."),
    data_source: str | None = typer.Option(
        None, "--data-source", help="data_source for every row (default: image_caption_rl / video_caption_rl)."
    ),
    ability: str = typer.Option(DEFAULT_ABILITY, "--ability", help="verl 'ability' column."),
    embed_images: bool = typer.Option(
        True, "--embed-images/--no-embed-images", help="Embed bytes of images given by path (verl reads bytes)."
    ),
    media_root: Path | None = typer.Option(
        None, "--media-root", help="Resolve relative media paths here instead of the dataset directory."
    ),
    check_media: bool = typer.Option(
        True, "--check-media/--no-check-media", help="Fail when a referenced video/image file does not exist."
    ),
) -> None:
    """Export a caprl dataset to verl's RL parquet layout (lossless: import it back with --from verl)."""
    console = _console()
    try:
        result = export_verl(
            dataset,
            out,
            media_root=media_root,
            data_source=data_source,
            ability=ability,
            embed_images=embed_images,
            check_media=check_media,
        )
    except (SchemaError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"exported {result.n_rows} rows ({result.n_images} images, {result.n_videos} videos) to {to.value} "
        f"layout -> {result.path}",
        markup=False,
    )


@app.command("inspect", short_help="Counts, histograms and a few samples of a dataset.")
def inspect_command(
    dataset: Path = typer.Argument(..., help="caprl dataset directory (or its samples.parquet/jsonl)."),
    show: int = typer.Option(3, "--show", min=0, help="How many samples to render."),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON only."),
) -> None:
    """Counts, option-count and MCQ-kind histograms, and a few rendered samples (gold option marked)."""
    console = _console()
    try:
        ds, stats = inspect_dataset(dataset)
    except (SchemaError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(stats.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    render_stats(stats, console)
    for sample in ds.samples[:show]:
        console.print(render_sample(sample))
