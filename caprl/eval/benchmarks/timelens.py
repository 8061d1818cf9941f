"""TimeLens-Bench: temporal grounding (find when a described moment happens), scored as TimeLens's official
evaluation scores it: the answer's first [start, end] pair (clock times, else "a - b" / "a to b", else bare numbers),
rounded to whole seconds; IoU with the gold span (a reversed span scores 0); mIoU and R1@{0.3,0.5,0.7}; by source.

Layout: the ``TencentARC/TimeLens-Bench`` download: ``<source>-timelens.json`` (``charades``, ``activitynet``,
``qvhighlights``), each a map of video id → ``duration``, ``spans`` (a list of [start, end]) and ``queries`` (one
per span: several questions per video), and the videos extracted from ``video_shards/`` into
``videos/<source>/<video id>.mp4``. Queries are cleaned as the official loader does (whitespace collapsed, final
periods stripped).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caprl.eval import prompts
from caprl.eval.benchmarks.base import GROUNDING, Benchmark, BenchmarkError, LoadContext, literal_list
from caprl.eval.data import DataSpec, Layout
from caprl.eval.types import EvalItem

SUFFIX = "-timelens"


def clean_query(query: str) -> str:
    return re.sub(r"\s+", " ", query).strip().strip(".").strip()


def gold_span(value: Any, where: str) -> tuple[float, float]:
    parts = literal_list(value)
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        raise BenchmarkError(f"timelens: {where}: a gold span needs [start, end], got {value!r}") from None


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        source = Path(row["_file"]).stem.removesuffix(SUFFIX)
        vid = row.get("_key")
        where = f"{row['_file']} video {vid!r}"
        spans, queries = literal_list(row.get("spans")), literal_list(row.get("queries"))
        if vid is None or not spans or len(spans) != len(queries):
            raise BenchmarkError(
                f"timelens: {where}: expected a video id mapping to equally long 'spans' and 'queries', got "
                f"{len(spans)} spans and {len(queries)} queries"
            )
        # The official loader appends ".mp4" to the id as it is (QVHighlights ids end in ".0").
        media_id, media = ctx.video(f"{source}/{vid}.mp4", row=row)
        for i, (span, query) in enumerate(zip(spans, queries, strict=True)):
            yield EvalItem(
                id=f"{source}/{vid}/{i}",
                media_id=media_id,
                media=media,
                question=f"Query: {clean_query(str(query))}",
                span=gold_span(span, f"{where} span {i}"),
                category=source,
                extra={"duration": row.get("duration")},
            )


TIMELENS = Benchmark(
    name="timelens",
    title="TimeLens-Bench",
    modality="video",
    data=DataSpec(
        download=("HF dataset TencentARC/TimeLens-Bench: the *-timelens.json files and video_shards/ (extracted)",),
        layout="the download folder (or one *-timelens.json file), videos extracted into videos/<source>/",
        media_dir="videos",
        layouts=(Layout("TencentARC/TimeLens-Bench", ("**/*-timelens.json",)),),
    ),
    load=load,
    metric=GROUNDING,
    open_instruction=prompts.GROUNDING,
)
