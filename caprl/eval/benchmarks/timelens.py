"""TimeLens-Bench: temporal grounding (find when a described moment happens), scored by mIoU and R1@{0.3,0.5,0.7}
of the first [start, end] in the reader's answer, by source dataset.

Format: JSON/JSONL (or parquet) rows from ``TencentARC/TimeLens-Bench`` with a video (``video``/``video_path``/
``vid``), a query (``query``/``sentence``/``caption``), the gold span in seconds (``span``/``timestamp``/
``timestamps``/``gt``/``answer``: ``[s, e]``, ``[[s, e], ...]`` (the first) or ``"s-e"``) and optionally
``duration`` and ``source``; videos under ``videos/`` beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caprl.eval import prompts
from caprl.eval.benchmarks.base import GROUNDING, Benchmark, BenchmarkError, LoadContext, literal_list
from caprl.eval.benchmarks.videomme import video_file
from caprl.eval.data import DataSpec, pick
from caprl.eval.extract import span
from caprl.eval.types import EvalItem


def gold_span(value: Any) -> tuple[float, float]:
    if isinstance(value, str) and not value.strip().startswith("["):
        found = span(value)
        if found is None:
            raise BenchmarkError(f"timelens: cannot read a [start, end] span from {value!r}")
        return found
    parts = literal_list(value)
    if parts and isinstance(parts[0], list | tuple) or (parts and hasattr(parts[0], "tolist")):
        parts = literal_list(parts[0])
    if len(parts) != 2:
        raise BenchmarkError(f"timelens: a gold span needs [start, end], got {value!r}")
    return float(parts[0]), float(parts[1])


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        media_id, media = ctx.video(video_file(str(pick(row, "video", "video_path", "vid", "video_id"))))
        yield EvalItem(
            id=ctx.next_id(row, "id", "qid", "index"),
            media_id=media_id,
            media=media,
            question=f"Query: {pick(row, 'query', 'sentence', 'caption', 'question')}",
            span=gold_span(pick(row, "span", "timestamp", "timestamps", "gt", "answer")),
            category=pick(row, "source", "dataset", default=Path(str(row.get("_file", ""))).stem or None),
            extra={"duration": pick(row, "duration")},
        )


TIMELENS = Benchmark(
    name="timelens",
    title="TimeLens-Bench",
    modality="video",
    data=DataSpec(
        download=("HF dataset TencentARC/TimeLens-Bench: its annotation files and videos",),
        layout="the annotation .json/.jsonl file(s) or their folder, with videos/ beside them",
        media_dir="videos",
    ),
    load=load,
    metric=GROUNDING,
    open_instruction=prompts.GROUNDING,
)
