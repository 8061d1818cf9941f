"""``caprl annotate``: caption a dataset or an image directory at scale, then export for pretraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console

from caprl.captioners.base import GenerationSettings
from caprl.errors import OptionError
from caprl.flags import settings_flags
from caprl.jobs import ResumeSettings, ShardSettings
from caprl.preflight import ModelFlags, existing_path, model_flags
from caprl.tables import summary_table

console = Console()


# Flags of a job that sends items to a captioner in batches; `caprl qa` takes them too.
CONCURRENCY = typer.Option(16, min=1, help="Requests in flight to an OpenAI-compatible server.")
BATCH_SIZE = typer.Option(None, min=1, help="Items per captioner call (default: 8; openai 4x concurrency).")
LIMIT = typer.Option(None, min=1, help="Only the first N items of the source.")


def captioner_options(backend: str, *, batch_size: int, concurrency: int) -> dict[str, Any]:
    """Backend keyword arguments from the command line's batching options (each backend takes its own)."""
    if backend == "transformers":
        return {"batch_size": batch_size}
    if backend == "openai":
        return {"max_concurrency": concurrency}
    return {}


def default_batch_size(backend: str, concurrency: int) -> int:
    # A batch is what one captioner call gets: rows of one forward (transformers), requests in flight (openai),
    # or the engine's scheduling window (vllm).
    return {"transformers": 8, "openai": 4 * concurrency, "vllm": 256}.get(backend, 8)


@settings_flags(ResumeSettings, into="resume")
@settings_flags(ShardSettings, into="shard")
@settings_flags(GenerationSettings, into="decoding", defaults={"seed": 0})
@model_flags("captioner", flag="--captioner", role="captioner", what="Captioner")
def annotate_command(
    out: Path = typer.Option(..., "--out", help="Output directory: parquet shards, manifest, run config."),
    data: Path | None = typer.Option(None, "--data", help="caprl dataset directory, or a plain image/video folder."),
    captioner: ModelFlags | None = None,
    executor: Literal["local", "ray"] = typer.Option(
        "local", help="local (this process) | ray (Ray Data actors; needs caprl[ray])."
    ),
    prompt: str | None = typer.Option(None, help="Prompt for every item (default: the item's, or per modality)."),
    batch_size: int | None = BATCH_SIZE,
    concurrency: int = CONCURRENCY,
    decoding: GenerationSettings | None = None,
    shard_size: int = typer.Option(1000, min=1, help="Records per parquet shard."),
    shard: ShardSettings | None = None,
    resume: ResumeSettings | None = None,
    video_fps: float = typer.Option(
        2.0, min=0.0, help="Frame sampling for videos in a plain folder: frames per second."
    ),
    video_max_frames: int = typer.Option(64, min=1, help="Frame sampling for videos in a plain folder: most frames."),
    limit: int | None = LIMIT,
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    ray_actors: int = typer.Option(1, min=1, help="Captioner actors (e.g. one per GPU)."),
    ray_gpus_per_actor: float = typer.Option(0.0, min=0.0, help="GPUs each actor reserves."),
    ray_cpus_per_actor: float = typer.Option(1.0, min=0.0, help="CPUs each actor reserves."),
    export_caprl: Path | None = typer.Option(None, help="Also write CapRL-2M-style jsonl here."),
    export_llava: Path | None = typer.Option(None, help="Also write LLaVA/ShareGPT-style pretraining json here."),
    absolute_paths: bool = typer.Option(False, help="Exports name media by absolute path."),
    export_only: bool = typer.Option(False, help="Only (re)write the exports of --out; caption nothing."),
) -> None:
    """Caption every item of DATA into sharded parquet under OUT; re-run the same command to resume.

    \b
    Example:
      caprl annotate --data data/images --captioner Qwen/Qwen2.5-VL-3B-Instruct \\
        --out runs/ann --export-caprl runs/ann/captions.jsonl
    """
    from caprl.annotate.export import export_annotations
    from caprl.annotate.progress import progress_bar
    from caprl.annotate.sources import open_source
    from caprl.captioners import load_captioner
    from caprl.lazy import Deferred
    from caprl.schema import FrameSampling

    assert shard is not None and resume is not None and captioner is not None  # filled in by the flags
    if not export_only:
        if data is None or captioner.location is None:
            raise OptionError("--data and --captioner are needed (unless --export-only)")
        existing_path(data, "--data", what="dataset or folder")
        size = batch_size or default_batch_size(captioner.backend_name, concurrency)
        spec = captioner.spec(**captioner_options(captioner.backend_name, batch_size=size, concurrency=concurrency))
        sampling = FrameSampling(fps=video_fps, max_frames=video_max_frames)
        source = open_source(data, prompt=prompt, video_sampling=sampling, limit=limit)
        common: dict[str, Any] = dict(
            settings=decoding,
            batch_size=size,
            shard_size=shard_size,
            rank=shard.rank,
            world_size=shard.world_size,
            retry_failed=resume.retry_failed,
            allow_config_change=resume.allow_config_change,
        )
        console.print(f"annotate {len(source.items)} items from {data} ({source.kind}) with {spec.name}")
        with progress_bar("annotate", console=console) as on_progress:
            if executor == "ray":
                from caprl.annotate.ray_backend import annotate_ray

                summary = annotate_ray(
                    source,
                    spec,
                    out,
                    num_actors=ray_actors,
                    num_gpus_per_actor=ray_gpus_per_actor,
                    num_cpus_per_actor=ray_cpus_per_actor,
                    ray_address=ray_address,
                    on_progress=on_progress,
                    **common,
                )
            else:
                from caprl.annotate.runner import annotate

                # Deferred: a rerun with every item done never loads the captioner.
                lazy = Deferred(spec.name, lambda: load_captioner(spec))
                summary = annotate(source, lazy, out, on_progress=on_progress, **common)  # type: ignore[arg-type]
        rows = [
            ("items", summary.items),
            ("already done", summary.already_done),
            ("captioned now", summary.ok),
            ("failed (media)", summary.failed_media),
            ("failed (captioner)", summary.failed_captioner),
            ("items/s", f"{summary.items_per_second:.2f}"),
        ]
        console.print(summary_table(f"annotate -> {out}", rows))
    for dest, fmt in ((export_caprl, "caprl2m"), (export_llava, "llava")):
        if dest is not None:
            result = export_annotations(out, dest, format=fmt, absolute=absolute_paths)  # type: ignore[arg-type]
            console.print(
                f"exported {result.written} captions to {dest} ({fmt}); left out: {result.skipped_failed} failed, "
                f"{result.skipped_no_path} without a media path"
            )
