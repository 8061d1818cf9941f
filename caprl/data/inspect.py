"""Summaries of a caprl dataset: counts and histograms (``dataset_stats``) and rich rendering for the CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from caprl.data.io import Dataset, read_dataset
from caprl.schema import LETTERS, Sample

NO_KIND = "(none)"


class DatasetStats(BaseModel):
    """Counts over a dataset. Histogram keys are option counts / MCQ counts / kind names; values are counts."""

    n_samples: int = 0
    n_images: int = 0
    n_videos: int = 0
    n_embedded_images: int = 0
    n_mcqs: int = 0
    options_per_mcq: dict[int, int] = {}
    mcqs_per_sample: dict[int, int] = {}
    mcq_kinds: dict[str, int] = {}
    gold_letters: dict[str, int] = {}
    references: dict[str, int] = {}
    """How many samples have a reference caption of each name."""


def _sorted(counter: Counter) -> dict:
    return dict(sorted(counter.items(), key=lambda kv: (str(type(kv[0])), kv[0])))


def dataset_stats(samples: Iterable[Sample]) -> DatasetStats:
    """Count samples, media, MCQs, option counts, kinds, gold letters and reference names."""
    modality: Counter[str] = Counter()
    options: Counter[int] = Counter()
    per_sample: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    golds: Counter[str] = Counter()
    refs: Counter[str] = Counter()
    embedded = 0
    n = 0
    for s in samples:
        n += 1
        modality[s.media.type] += 1
        embedded += s.media.type == "image" and s.media.data is not None
        per_sample[len(s.mcqs)] += 1
        refs.update(s.references.keys())
        for q in s.mcqs:
            options[len(q.options)] += 1
            kinds[q.kind or NO_KIND] += 1
            golds[LETTERS[q.gold]] += 1
    return DatasetStats(
        n_samples=n,
        n_images=modality["image"],
        n_videos=modality["video"],
        n_embedded_images=embedded,
        n_mcqs=sum(options.values()),
        options_per_mcq=_sorted(options),
        mcqs_per_sample=_sorted(per_sample),
        mcq_kinds=dict(kinds.most_common()),
        gold_letters=_sorted(golds),
        references=dict(refs.most_common()),
    )


def inspect_dataset(path: str | Path) -> tuple[Dataset, DatasetStats]:
    """Load a dataset directory (or file) and compute its stats."""
    ds = read_dataset(path)
    return ds, dataset_stats(ds.samples)


def _histogram(title: str, counts: dict, total: int) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("value")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for key, count in counts.items():
        table.add_row(str(key), str(count), f"{count / total:.1%}" if total else "-")
    return table


def render_stats(stats: DatasetStats, console: Console) -> None:
    """Print the counts and histograms."""
    media = f"{stats.n_images} images ({stats.n_embedded_images} embedded), {stats.n_videos} videos"
    mean = stats.n_mcqs / stats.n_samples if stats.n_samples else 0.0
    console.print(f"[bold]{stats.n_samples}[/] samples: {media}; [bold]{stats.n_mcqs}[/] MCQs ({mean:.2f} per sample)")
    for title, counts, total in (
        ("options per MCQ", stats.options_per_mcq, stats.n_mcqs),
        ("MCQs per sample", stats.mcqs_per_sample, stats.n_samples),
        ("MCQ kinds", stats.mcq_kinds, stats.n_mcqs),
        ("gold letters", stats.gold_letters, stats.n_mcqs),
        ("reference captions", stats.references, stats.n_samples),
    ):
        if counts:
            console.print(_histogram(title, counts, total))


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _media_line(s: Sample) -> str:
    m = s.media
    if m.type == "video":
        how = f"{m.sampling.num_frames} frames" if m.sampling.num_frames else f"{m.sampling.effective_fps} fps"
        return f"video {m.path} ({how}, max {m.sampling.max_frames})"
    if m.data is not None:
        return f"image, {len(m.data)} bytes embedded" + (f" ({m.path})" if m.path else "")
    return f"image {m.path}"


def render_sample(sample: Sample, *, excerpt_chars: int = 300) -> Panel:
    """One sample as a panel: media, prompt, MCQs with labelled options (gold marked), a reference excerpt."""
    parts: list = [Text(_media_line(sample), style="dim"), Text.assemble(("prompt: ", "bold"), sample.prompt)]
    for i, q in enumerate(sample.mcqs, start=1):
        kind = f" [{q.kind}]" if q.kind else ""
        lines = Text.assemble((f"Q{i}{kind}: ", "bold"), q.question)
        for j, option in enumerate(q.labelled_options()):
            gold = j == q.gold
            lines.append("\n  " + ("✓ " if gold else "  ") + option, style="bold green" if gold else "")
        parts.append(lines)
    if sample.references:
        name = max(sample.references, key=lambda k: len(sample.references[k]))
        parts.append(Text.assemble((f"reference ({name}): ", "bold"), _excerpt(sample.references[name], excerpt_chars)))
    return Panel(Group(*parts), title=sample.id, title_align="left")
