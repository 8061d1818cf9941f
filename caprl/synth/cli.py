"""``caprl synth``: write shapes-world datasets (thin shell over `caprl.synth.samples`)."""

from __future__ import annotations

from pathlib import Path

import typer

from caprl.errors import OptionError
from caprl.synth.samples import clear_previous, generate_image_dataset, generate_video_dataset

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Generate the synthetic shapes world: media, exact MCQs and reference captions from scene graphs.",
)


# Flags both kinds of dataset take, with one meaning.
SEED = typer.Option(0, "--seed", help="Dataset seed; item i depends only on (seed, i).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def _check_size(size: int) -> None:
    if size < 28 or size % 28:
        raise OptionError(f"--size {size}: must be a positive multiple of 28 (the captioner's patch grid)")


def _replaced(out: Path) -> str:
    """What the summary line adds when ``out`` held a shapes dataset (it is replaced cleanly, media and all)."""
    n = clear_previous(out)
    return f" (replacing the {n}-sample dataset that was there)" if n else ""


@app.command("image", short_help="Shapes images with MCQs and reference captions.")
def image_command(
    n: int = typer.Option(..., "--n", min=1, help="Number of images to generate."),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (samples.parquet, media/images/*.png)."),
    seed: int = SEED,
    size: int = typer.Option(224, "--size", help="Image side in pixels; a multiple of 28."),
    progress: bool = PROGRESS,
) -> None:
    """Write a dataset of shapes images with MCQs and reference captions.

    Coloured shapes on a 3x3 grid with titles and number labels; MCQ kinds attribute, count, position, text;
    captions at levels terse, brief, detailed and exhaustive.
    """
    _check_size(size)
    replaced = _replaced(out)
    path = generate_image_dataset(n, out, seed=seed, size=size, progress=progress)
    typer.echo(f"wrote {n} shapes images (seed {seed}, {size}x{size}) to {path}{replaced}")


@app.command("video", short_help="Short shapes videos with MCQs and captions.")
def video_command(
    n: int = typer.Option(..., "--n", min=1, help="Number of videos to generate."),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (samples.parquet, media/videos/*.mp4)."),
    seed: int = SEED,
    size: int = typer.Option(168, "--size", help="Frame side in pixels; a multiple of 28."),
    fps: int = typer.Option(8, "--fps", min=1, help="Encoded frame rate."),
    sample_fps: float = typer.Option(
        2.0, "--sample-fps", min=0.0, help="Frame rate a captioner samples at (stored per sample)."
    ),
    max_frames: int = typer.Option(16, "--max-frames", min=1, help="Most frames a captioner is shown per video."),
    progress: bool = PROGRESS,
) -> None:
    """Write a dataset of short shapes videos with MCQs and reference captions.

    4-8 second clips in which shapes appear, change colour and move; MCQ kinds add order, motion and when;
    captions are chronological, with mm:ss timestamps and mm:ss - mm:ss ranges.
    """
    _check_size(size)
    replaced = _replaced(out)
    path = generate_video_dataset(
        n, out, seed=seed, size=size, fps=fps, sample_fps=sample_fps, max_frames=max_frames, progress=progress
    )
    typer.echo(f"wrote {n} shapes videos (seed {seed}, {size}x{size} @ {fps} fps) to {path}{replaced}")
