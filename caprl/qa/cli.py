"""``caprl qa``: generate MCQs with a VLM, and keep only those that need the media."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from caprl.annotate.cli import BATCH_SIZE, CONCURRENCY, LIMIT, captioner_options, default_batch_size
from caprl.captioners.base import GenerationSettings
from caprl.errors import OptionError
from caprl.flags import settings_flags
from caprl.jobs import ResumeSettings, ShardSettings
from caprl.preflight import ModelFlags, existing_path, model_flags
from caprl.qa.filter import FilterConfig
from caprl.tables import summary_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
console = Console()


@app.callback()
def _group() -> None:
    """Make the questions that define the reward: a VLM writes them, a visual-dependency filter keeps the good ones."""


def _vlm(vlm: ModelFlags, batch_size: int, concurrency: int):
    """The VLM, checked now and loaded on first use (a rerun with nothing left to do never loads it)."""
    from caprl.captioners import load_captioner
    from caprl.lazy import Deferred

    built = vlm.spec(**captioner_options(vlm.backend_name, batch_size=batch_size, concurrency=concurrency))
    return Deferred(built.name, lambda: load_captioner(built))


def vlm_flags(*, required: bool):
    return model_flags("vlm", flag="--vlm", role="captioner", what="VLM", required=required)


@app.command("generate", short_help="A VLM writes K MCQs per item (resumable).")
@vlm_flags(required=True)
@settings_flags(ResumeSettings, into="resume")
@settings_flags(ShardSettings, into="shard")
@settings_flags(
    GenerationSettings, into="decoding", exclude=("top_p", "n"), defaults={"max_new_tokens": 1024, "seed": 0}
)
def generate_command(
    data: Path = typer.Option(..., "--data", help="caprl dataset directory, or a plain image/video folder."),
    vlm: ModelFlags | None = None,
    out: Path = typer.Option(..., "--out", help="Output directory (records log + a dataset of the questions)."),
    k: int = typer.Option(5, "--k", min=1, help="Questions per item (CapRL: 5)."),
    n_options: int = typer.Option(4, min=3, max=26, help="Options per question the prompt asks for."),
    batch_size: int | None = BATCH_SIZE,
    concurrency: int = CONCURRENCY,
    decoding: GenerationSettings | None = None,
    shard: ShardSettings | None = None,
    resume: ResumeSettings | None = None,
    limit: int | None = LIMIT,
) -> None:
    """A VLM writes K multiple-choice questions per item of DATA; re-run the same command to resume.

    Example: caprl qa generate --data data/shapes --vlm Qwen/Qwen2.5-VL-72B-Instruct --out runs/qa-gen
    """
    from caprl.annotate.progress import progress_bar
    from caprl.qa.generate import generate_qa

    assert shard is not None and resume is not None and vlm is not None  # filled in by the flags
    existing_path(data, "--data", what="dataset or folder")
    batch_size = batch_size or default_batch_size(vlm.backend_name, concurrency)
    captioner = _vlm(vlm, batch_size, concurrency)
    with progress_bar("qa generate", console=console) as on_progress:
        summary = generate_qa(
            data,
            captioner,
            out,
            k=k,
            n_options=n_options,
            settings=decoding,
            batch_size=batch_size,
            rank=shard.rank,
            world_size=shard.world_size,
            retry_failed=resume.retry_failed,
            allow_config_change=resume.allow_config_change,
            limit=limit,
            on_progress=on_progress,
        )
    statuses = ("ok", "unparseable", "no_valid_questions", "media_error", "error")
    rows = [("items", summary.items), ("already done", summary.already_done)]
    rows += [(f"asked now: {s}", summary.by_status.get(s, 0)) for s in statuses]
    rows.append(("questions written now", summary.questions))
    console.print(summary_table(f"qa generate -> {out}", rows))
    if summary.repairs:
        console.print("near-misses repaired: " + ", ".join(f"{k} x{v}" for k, v in sorted(summary.repairs.items())))
    console.print(
        f"dataset: {summary.dataset_items} items, {summary.dataset_questions} questions in {out} "
        f"(next: caprl qa filter --data {out} ...)"
    )


@app.command("filter", short_help="Keep the MCQs that need the media to answer.")
@model_flags(
    "blind", flag="--blind", role="reader", what="Text-only answerer for the without-media leg", prefix="blind-",
    served_model=False, device=False, note=" Default: --vlm, text only.",
)  # fmt: skip
@vlm_flags(required=False)
@settings_flags(ResumeSettings, into="resume", exclude=("retry_failed",))
@settings_flags(ShardSettings, into="shard")
@settings_flags(FilterConfig, into="config")
def filter_command(
    out: Path = typer.Option(..., "--out", help="Output directory (statistics log, kept dataset, summary)."),
    data: Path | None = typer.Option(None, "--data", help="caprl dataset with MCQs (e.g. qa generate's output)."),
    vlm: ModelFlags | None = None,
    blind: ModelFlags | None = None,
    config: FilterConfig | None = None,
    batch_questions: int = typer.Option(16, min=1, help="Questions per model call (each is asked 2r times)."),
    batch_size: int = typer.Option(64, min=1, help="Rows per forward of a transformers VLM."),
    concurrency: int = CONCURRENCY,
    shard: ShardSettings | None = None,
    resume: ResumeSettings | None = None,
    rethreshold: bool = typer.Option(
        False, "--rethreshold", help="Apply --hi/--lo to the statistics in --out; ask no model."
    ),
) -> None:
    """Keep the questions a VLM answers with the media (acc > HI) but not without it (acc < LO).

    Example: caprl qa filter --data runs/qa-gen --vlm Qwen/Qwen2.5-VL-3B-Instruct --out runs/qa-filtered
    Try other thresholds later, without a model: caprl qa filter --out runs/qa-filtered --rethreshold --hi 0.5
    """
    from caprl.annotate.progress import progress_bar
    from caprl.qa.filter import filter_qa
    from caprl.qa.filter import rethreshold as apply_thresholds

    assert config and shard and resume and vlm and blind  # filled in by the flags
    if rethreshold:
        summary = apply_thresholds(out, hi=config.hi, lo=config.lo, data=data)
    else:
        if data is None or vlm.location is None:
            raise OptionError("--data and --vlm are needed (unless --rethreshold)")
        existing_path(data, "--data", what="dataset")
        blind_spec = blind.spec() if blind.location is not None else None
        captioner = _vlm(vlm, batch_size, concurrency)
        text_leg = None
        if blind_spec is not None:
            from caprl.readers import load_reader

            text_leg = load_reader(blind_spec)
        with progress_bar("qa filter", unit="questions", console=console) as on_progress:
            summary = filter_qa(
                data,
                captioner,
                out,
                blind=text_leg,
                config=config,
                batch_questions=batch_questions,
                rank=shard.rank,
                world_size=shard.world_size,
                allow_config_change=resume.allow_config_change,
                on_progress=on_progress,
            )
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    rows: list[tuple[str, object]] = [("questions", summary.questions), ("kept", summary.kept)]
    rows += [(f"dropped: {reason}", count) for reason, count in summary.by_reason.items()]
    rows += [
        ("items with a kept question", f"{summary.items_kept} / {summary.items}"),
        (
            "accuracy with / without media",
            f"{fmt(summary.mean_accuracy_with_media)} / {fmt(summary.mean_accuracy_without_media)}",
        ),
        ("unreadable answers", summary.unparsed_answers),
        ("asked now / already done", f"{summary.asked_now} / {summary.already_done}"),
    ]
    title = f"qa filter -> {out} (r={summary.r}; kept: accuracy with media > {summary.hi}, without < {summary.lo})"
    console.print(summary_table(title, rows))
