"""Video-MME (2,700 four-way MCQs on 900 videos), scored by accuracy, reported by duration (short/medium/long).

Formats: the HF parquet of ``lmms-lab/Video-MME`` (``videoID, duration, question_id, question, options, answer``)
or JSON/JSONL with those fields; the videos (``<videoID>.mp4``) in ``data/`` beside it (the unzipped video
archives) or under ``--media-root video-mme=DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, LoadContext, literal_list, mcq_item, video_file
from caprl.eval.data import DataSpec, pick
from caprl.eval.types import EvalItem


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        media_id, media = ctx.video(video_file(str(pick(row, "videoID", "video", "video_id"))), row=row)
        yield mcq_item(
            id=ctx.next_id(row, "question_id", "index"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            options=[str(o) for o in literal_list(pick(row, "options", "candidates"))],
            answer=pick(row, "answer"),
            category=pick(row, "duration"),
            extra={"task_type": pick(row, "task_type"), "domain": pick(row, "domain")},
        )


VIDEO_MME = Benchmark(
    name="video-mme",
    title="Video-MME",
    modality="video",
    data=DataSpec(
        download=("HF dataset lmms-lab/Video-MME: videomme/test-*.parquet and the videos_chunked_*.zip archives",),
        layout="the parquet file or its folder; the unzipped videos in data/ beside it",
        media_dir="data",
    ),
    load=load,
)
