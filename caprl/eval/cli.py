"""``caprl eval``: Prism evaluation from the command line (a thin shell over ``caprl.eval.run_prism``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.callback()
def _group() -> None:
    """Prism evaluation: a captioner describes each benchmark medium, a text-only reader answers the benchmark's
    questions from the captions alone, and the benchmark's official metric scores the answers."""


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"expected NAME=PATH, got {v!r}", param_hint=option)
        out[name.strip().lower()] = path
    return out


@app.command("list")
def list_command() -> None:
    """List the benchmarks, their metric and where their data is looked for."""
    from caprl.eval.benchmarks import REGISTRY
    from caprl.eval.data import env_name

    table = Table(title="Prism benchmarks")
    for col in ("name", "title", "modality", "metric", "data (env var)", "download"):
        table.add_column(col)
    for b in REGISTRY.values():
        where = "built in" if b.builtin else env_name(b.name)
        table.add_row(b.name, b.title, b.modality, b.metric.name, where, "; ".join(b.data.download))
    console.print(table)


@app.command("prism")
def prism_command(
    benchmark: str = typer.Option(
        ..., "--benchmark", "-b", help="Benchmark name(s), comma-separated (see `caprl eval list`)."
    ),
    captioner: str | None = typer.Option(
        None, "--captioner", help="Captioner model id/path, or an OpenAI-compatible server URL (also its record name)."
    ),
    captions: Path | None = typer.Option(
        None,
        "--captions",
        help="Score captions written elsewhere instead of captioning: a jsonl/json/parquet file of rows with "
        "'caption' (or 'captions': a list) and a key (question_id, or media_id/image/video/path, or id). No "
        "captioner is loaded; the records are named --captioner-name (default file:<the file's path>).",
    ),
    reader: str = typer.Option(
        None, "--reader", help="Reader model id/path, or an OpenAI-compatible server URL (needed for read/score)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder: records per benchmark, report.json, report.md."),
    stage: str = typer.Option("all", "--stage", help="caption | read | score | all (one stage, or all in order)."),
    k: int | None = typer.Option(
        None,
        "--k",
        min=1,
        help="Captions per medium (M_Acc averages them, BoN takes the best); default 4, or with --captions what "
        "the file holds.",
    ),
    temperature: float = typer.Option(1.0, help="Captioning temperature (Prism/CapRL: 1.0)."),
    top_p: float = typer.Option(1.0, help="Captioning top-p."),
    max_new_tokens: int = typer.Option(2048, help="Longest caption in tokens."),
    seed: int = typer.Option(0, help="Seed for caption sampling and the bootstrap."),
    caption_prompt: str | None = typer.Option(None, help="Caption prompt for every benchmark (default: each one's)."),
    question_aware: bool = typer.Option(
        False, help="Put the question into the caption prompt (a caption per question)."
    ),
    frames: int | None = typer.Option(None, help="Frames per video shown to the captioner (default 128)."),
    read_mode: str = typer.Option("score", help="MCQs: score (letter probabilities, one forward pass) | generate."),
    read_max_new_tokens: int = typer.Option(32, help="Longest generated answer in tokens."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also read every question with no caption."),
    limit: int | None = typer.Option(None, help="Only the first N questions of each benchmark (smoke runs)."),
    data: list[str] = typer.Option([], "--data", help="NAME=PATH: where a benchmark's files are (repeatable)."),
    media_root: list[str] = typer.Option([], "--media-root", help="NAME=DIR: where a benchmark's videos are."),
    data_root: str | None = typer.Option(None, help="Folder with one subfolder per benchmark ($CAPRL_EVAL_DATA)."),
    captioner_backend: str | None = typer.Option(None, help="transformers | openai | vllm (default: from the spec)."),
    captioner_model: str | None = typer.Option(None, help="Model name to request from a captioner server."),
    captioner_name: str | None = typer.Option(
        None, help="Name the captions are recorded under (default: --captioner)."
    ),
    reader_backend: str | None = typer.Option(None, help="transformers | openai | vllm (default: from the spec)."),
    reader_model: str | None = typer.Option(None, help="Model name to request from a reader server."),
    reader_name: str | None = typer.Option(None, help="Name the answers are recorded under (default: --reader)."),
    device: str | None = typer.Option(None, help="Device for transformers models (cuda, cpu; default: best)."),
    caption_batch: int = typer.Option(8, help="Media per captioner call."),
    read_batch: int = typer.Option(64, help="Questions per reader call."),
    judge: str | None = typer.Option(
        None, help="OpenAI-compatible judge URL for MMVU/MMBench-Video ($CAPRL_JUDGE_URL)."
    ),
    judge_model: str | None = typer.Option(None, help="Judge model name ($CAPRL_JUDGE_MODEL)."),
    compare: str | None = typer.Option(None, help="Also compare with this captioner's records in --out (paired)."),
    bootstrap: int = typer.Option(2000, help="Bootstrap resamples for the 95% intervals."),
    html_items: int = typer.Option(24, min=0, help="Questions per benchmark shown in report.html."),
) -> None:
    """Caption, read and score: the Prism evaluation of a captioner.

    Each stage appends records keyed by what produced them, so a killed run resumes where it stopped, and
    captions are made once: reading with another reader, or re-scoring, never captions again. With --captions
    FILE, captions written elsewhere are scored instead (no captioner). Writes report.json, report.md and
    report.html (scores, and a sample of questions with media, captions and answers).

    \b
    Example (the built-in shapes world, tiny models from `caprl models tiny --out models/tiny`):
      caprl eval prism -b shapes-image,shapes-video --captioner models/tiny/captioner \\
        --reader models/tiny/reader --out runs/eval --k 4
    """
    from caprl.eval.backends import load_captioner
    from caprl.eval.benchmarks import BenchmarkError
    from caprl.eval.config import PrismConfig
    from caprl.eval.data import DataMissing, DataPaths
    from caprl.eval.external import CaptionsFileError
    from caprl.eval.metrics.judge import JudgeNotConfigured, load_judge
    from caprl.eval.pipeline import run_prism
    from caprl.eval.read import StageError
    from caprl.eval.report import rich_table

    if stage not in ("caption", "read", "score", "all"):
        raise typer.BadParameter("choose caption, read, score or all", param_hint="--stage")
    if read_mode not in ("score", "generate"):
        raise typer.BadParameter("choose score or generate", param_hint="--read-mode")
    if reader is None and stage != "caption":
        raise typer.BadParameter("the read and score stages need a reader", param_hint="--reader")
    if (captioner is None) == (captions is None):
        raise typer.BadParameter(
            "give --captioner (a model to caption with) or --captions (a file of captions), not both",
            param_hint="--captioner / --captions",
        )
    if captions is not None:
        name = captioner_name or f"file:{captions.expanduser().resolve()}"
    else:
        assert captioner is not None
        name = captioner_name or captioner + (f"@{captioner_model}" if captioner_model else "")
    try:
        optional = {"k": k} if k is not None else {}
        cfg = PrismConfig(
            benchmarks=[b.strip().lower() for b in benchmark.split(",") if b.strip()],
            out=out,
            captioner=name,
            captions=captions,
            html_items=html_items,
            **optional,
            reader=None if reader is None else reader_name or reader + (f"@{reader_model}" if reader_model else ""),
            stage=stage,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
            caption_prompt=caption_prompt,
            question_aware=question_aware,
            frames=frames,
            read_mode=read_mode,
            read_max_new_tokens=read_max_new_tokens,
            baseline=baseline,
            limit=limit,
            caption_batch=caption_batch,
            read_batch=read_batch,
            compare=compare,
            bootstrap=bootstrap,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    from caprl.eval.benchmarks import REGISTRY

    unknown = [b for b in cfg.benchmarks if b not in REGISTRY]
    if unknown:
        raise typer.BadParameter(f"unknown {unknown}; known: {', '.join(REGISTRY)}", param_hint="--benchmark")

    def make_captioner():
        assert captioner is not None
        kwargs: dict = {}
        backend = captioner_backend or ("openai" if captioner.startswith(("http://", "https://")) else "transformers")
        if backend == "openai" and captioner_model:
            kwargs["model"] = captioner_model
        if backend == "transformers":
            kwargs["batch_size"] = caption_batch
            if device:
                kwargs["device"] = device
        console.print(f"loading captioner {captioner} ({backend})")
        return load_captioner(captioner, backend=backend, **kwargs)

    def make_reader():
        from caprl.readers import load_reader

        assert reader is not None
        kwargs: dict = {}
        backend = reader_backend or ("openai" if reader.startswith(("http://", "https://")) else "transformers")
        if backend == "openai" and reader_model:
            kwargs["model"] = reader_model
        if backend == "transformers" and device:
            kwargs["device"] = device
        console.print(f"loading reader {reader} ({backend})")
        return load_reader(reader, backend=backend, **kwargs)

    judge_model_obj = None
    if judge or os.environ.get("CAPRL_JUDGE_URL"):
        judge_model_obj = lambda: load_judge(judge, judge_model)  # noqa: E731

    paths = DataPaths(data=_pairs(data, "--data"), media=_pairs(media_root, "--media-root"), root=data_root)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bars:
        tasks: dict[tuple[str, str], int] = {}

        def progress(stage_name: str, bench: str, advance: int, total: int) -> None:
            key = (stage_name, bench)
            if key not in tasks:
                tasks[key] = bars.add_task(f"{stage_name:<7} {bench}", total=total)
            bars.update(tasks[key], total=total, advance=advance)

        try:
            report = run_prism(
                cfg,
                captioner=make_captioner if captioner else None,
                reader=make_reader if reader else None,
                judge=judge_model_obj,
                paths=paths,
                progress=progress,
                log=console.print,
            )
        except (DataMissing, JudgeNotConfigured, StageError, CaptionsFileError, BenchmarkError) as exc:
            bars.stop()
            console.print("[red]error:[/]", escape(str(exc)))
            raise typer.Exit(2) from None
    if report is None:
        console.print(f"stage {stage} done; records are in {out}")
        return
    console.print(rich_table(report))
    console.print(f"report: {out / 'report.json'}, {out / 'report.md'} and {out / 'report.html'}")
