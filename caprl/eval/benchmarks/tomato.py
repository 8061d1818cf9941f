"""TOMATO (1,484 MCQs on visual temporal reasoning), scored by accuracy by reasoning type.

Format: the ``yale-nlp/TOMATO`` release: ``data/<reasoning type>.json`` (a map of id → ``question, options,
answer`` (option index), ``key``, ``demonstration_type``) and ``videos/<demonstration type>/<key>.mp4``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from caprl.eval.benchmarks.base import Benchmark, LoadContext, literal_list, mcq_item
from caprl.eval.benchmarks.videomme import video_file
from caprl.eval.data import DataSpec, pick
from caprl.eval.types import EvalItem


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        reasoning = Path(str(row.get("_file", ""))).stem
        video = pick(row, "video", "video_path")
        if video is None:
            video = f"{row['demonstration_type']}/{row['key']}"
        media_id, media = ctx.video(video_file(str(video)))
        yield mcq_item(
            id=f"{reasoning}/{ctx.next_id(row, '_key', 'id')}",
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            options=[str(o) for o in literal_list(pick(row, "options", "candidates"))],
            answer=pick(row, "answer"),
            category=reasoning or None,
        )


TOMATO = Benchmark(
    name="tomato",
    title="TOMATO",
    modality="video",
    data=DataSpec(
        download=("the yale-nlp/TOMATO release: data/*.json and videos/ (unzipped)",),
        layout="the folder holding data/ and videos/",
        media_dir="videos",
    ),
    load=load,
    split="data",
)
