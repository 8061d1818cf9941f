"""MMBench-Video: open questions about long videos, each answer scored 0-3 by an LLM judge against the reference;
reported as the mean score (0-3, not a percentage) by dimension.

Format: VLMEvalKit's ``MMBench-Video.tsv`` (``index, video, question, answer, dimensions``) from
``opencompass/MMBench-Video``, or JSON/parquet with those fields; videos ``video/<video>.mp4`` beside it.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, LoadContext, Metric, literal_list
from caprl.eval.benchmarks.videomme import video_file
from caprl.eval.data import DataSpec, pick
from caprl.eval.metrics.judge import QUALITY_0_3
from caprl.eval.types import EvalItem

OPEN = (
    "You are given a description of a video, not the video itself. Using only the description, answer the "
    "question about the video in one or two sentences."
)


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        media_id, media = ctx.video(video_file(str(pick(row, "video", "video_name"))))
        dims = literal_list(pick(row, "dimensions", "dimension"))
        yield EvalItem(
            id=ctx.next_id(row, "index", "question_id"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            answers=[str(pick(row, "answer"))],
            category=str(dims[0]) if dims else pick(row, "video_type"),
        )


MMBENCH_VIDEO = Benchmark(
    name="mmbench-video",
    title="MMBench-Video",
    modality="video",
    data=DataSpec(
        download=("HF dataset opencompass/MMBench-Video: MMBench-Video.tsv and the video archive (unzipped)",),
        layout="the .tsv file or its folder, with video/ beside it",
        media_dir="video",
    ),
    load=load,
    metric=Metric("judge_score", scale=3.0, judge=QUALITY_0_3),
    open_instruction=OPEN,
)
