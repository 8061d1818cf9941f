"""``caprl eval``: Prism evaluation from the command line (a thin shell over ``caprl.eval.run_prism``)."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from caprl.errors import OptionError
from caprl.eval.config import PrismConfig
from caprl.flags import build_settings, settings_flags
from caprl.preflight import ModelFlags, existing_path, model_flags

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
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
            raise OptionError(f"{option} {v}: expected NAME=PATH")
        out[name.strip().lower()] = path
    return out


def _record_name(flags: ModelFlags) -> str:
    """What records made by a model are keyed by when no name is given: its location, and its served model."""
    return f"{flags.location}@{flags.served_model}" if flags.served_model else str(flags.location)


@app.command("list", short_help="The benchmarks, their metric and where their data goes.")
def list_command() -> None:
    """List the benchmarks, their metric and where their data is looked for.

    Each benchmark's data locations and downloads are printed in full, one per line (no table column cuts them).
    """
    from caprl.eval.benchmarks import REGISTRY
    from caprl.eval.data import DATA_ROOT_ENV, env_name

    for b in REGISTRY.values():
        typer.echo(f"{b.name}: {b.title} ({b.modality}; metric {b.metric.name})")
        made = "; built in: made on first use when none is given" if b.builtin else ""
        typer.echo(
            f"  data: --data {b.name}=PATH, or ${env_name(b.name)}, or <data root>/{b.name} "
            f"(--data-root or ${DATA_ROOT_ENV}){made}"
        )
        if b.data.layout:
            typer.echo(f"  put there: {b.data.layout}")
        for source in b.data.download:
            typer.echo(f"  download: {source}")


@app.command("prism", short_help="Caption, read and score: evaluate a captioner.")
@settings_flags(PrismConfig, into="settings", unset=True, exclude=("benchmarks", "captioner", "reader"))
@model_flags(
    "reader", flag="--reader", role="reader", what="Reader", prefix="reader-", device=False,
    note=" Needed for read/score.",
)  # fmt: skip
@model_flags(
    "captioner", flag="--captioner", role="captioner", what="Captioner", prefix="captioner-", device=False,
    note=" Also its record name.",
)  # fmt: skip
def prism_command(
    benchmark: str = typer.Option(
        ..., "--benchmark", "-b", help="Benchmark name(s), comma-separated (see `caprl eval list`)."
    ),
    captioner: ModelFlags | None = None,
    reader: ModelFlags | None = None,
    settings: dict[str, Any] | None = None,
    data: list[str] = typer.Option([], "--data", help="NAME=PATH: where a benchmark's files are (repeatable)."),
    media_root: list[str] = typer.Option([], "--media-root", help="NAME=DIR: where a benchmark's videos are."),
    data_root: str | None = typer.Option(None, help="Folder with one subfolder per benchmark ($CAPRL_EVAL_DATA)."),
    captioner_name: str | None = typer.Option(
        None, help="Name the captions are recorded under (default: --captioner)."
    ),
    reader_name: str | None = typer.Option(None, help="Name the answers are recorded under (default: --reader)."),
    device: str | None = typer.Option(None, help="Device for transformers models (cuda, cpu; default: best)."),
    judge: str | None = typer.Option(
        None, help="OpenAI-compatible judge URL for MMVU/MMBench-Video ($CAPRL_JUDGE_URL)."
    ),
    judge_model: str | None = typer.Option(None, help="Judge model name ($CAPRL_JUDGE_MODEL)."),
) -> None:
    """Caption, read and score: the Prism evaluation of a captioner.

    Each stage appends records keyed by what produced them, so a killed run resumes where it stopped, and
    captions are made once: reading with another reader, or re-scoring, never captions again. With --captions
    FILE, captions written elsewhere are scored instead (no captioner). Writes report.json, report.md and
    report.html (scores, and a sample of questions with media, captions and answers).

    \b
    Example (the built-in shapes world; caprl models tiny --out models/tiny):
      caprl eval prism -b shapes-image,shapes-video \\
        --captioner models/tiny/captioner --reader models/tiny/reader \\
        --out runs/eval --k 4
    """
    from caprl.captioners import load_captioner
    from caprl.eval.data import DataPaths
    from caprl.eval.metrics.judge import load_judge
    from caprl.eval.pipeline import run_prism
    from caprl.eval.report import caption_error_lines, rich_table, truth_table

    assert captioner is not None and reader is not None  # filled in by model_flags
    given = settings or {}
    stage, captions = given.get("stage", "all"), given.get("captions")
    if reader.location is None and stage != "caption":
        raise OptionError("--reader is needed for the read and score stages (or give --stage caption)")
    if (captioner.location is None) == (captions is None):
        raise OptionError("give --captioner (a model to caption with) or --captions (a file of captions), not both")
    if captions is not None:
        existing_path(captions, "--captions", what="captions file")
        name = captioner_name or f"file:{captions.expanduser().resolve()}"
    else:
        assert captioner.location is not None
        name = captioner_name or _record_name(captioner)
    # The models are loaded only when a stage has work for them; the specs of those a stage uses are checked now.
    captioner_spec = reader_spec = None
    if captioner.location is not None:
        captioner_spec = captioner.spec(device=device, check=stage in ("caption", "all"))
    if reader.location is not None:
        reader_spec = reader.spec(device=device, check=stage in ("read", "all"))
    # Built from the flags typed only: k left out means 4, or what a captions file holds.
    cfg = build_settings(
        PrismConfig,
        {
            **given,
            "benchmarks": [b.strip().lower() for b in benchmark.split(",") if b.strip()],
            "captioner": name,
            "reader": None if reader_spec is None else reader_name or _record_name(reader),
        },
        renamed={"benchmarks": "--benchmark"},
    )
    from caprl.eval.benchmarks import REGISTRY

    unknown = [b for b in cfg.benchmarks if b not in REGISTRY]
    if unknown:
        raise OptionError(
            f"--benchmark: unknown {', '.join(unknown)}", hint=f"known: {', '.join(REGISTRY)} (caprl eval list)"
        )
    from caprl.eval.profiles import ProfileError, scoring

    for b in cfg.benchmarks:
        try:
            scoring(cfg.profile, b)
        except ProfileError as exc:
            raise OptionError(f"--profile {cfg.profile}: {exc}") from None

    def make_captioner():
        assert captioner_spec is not None
        console.print(f"loading captioner {captioner_spec.location} ({captioner_spec.backend})")
        batch = {"batch_size": cfg.caption_batch} if captioner_spec.backend == "transformers" else {}
        return load_captioner(captioner_spec, **batch)

    def make_reader():
        from caprl.readers import load_reader

        assert reader_spec is not None
        console.print(f"loading reader {reader_spec.location} ({reader_spec.backend})")
        return load_reader(reader_spec)

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

        report = run_prism(
            cfg,
            captioner=make_captioner if captioner_spec else None,
            reader=make_reader if reader_spec else None,
            judge=judge_model_obj,
            paths=paths,
            progress=progress,
            log=console.print,
        )
    out = cfg.out
    if report is None:
        console.print(f"stage {stage} done; records are in {out}")
        return
    console.print(rich_table(report))
    if (truth := truth_table(report)) is not None:
        console.print(truth)
    for line in caption_error_lines(report):
        console.print(f"warning: {line}", markup=False, highlight=False)
    console.print(f"report: {out / 'report.json'}, {out / 'report.md'} and {out / 'report.html'}")
