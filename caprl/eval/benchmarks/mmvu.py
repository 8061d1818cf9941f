"""MMVU (validation, 1,000 expert-domain video questions): multiple-choice questions scored by accuracy,
open-ended ones by an LLM judge with MMVU's own open-ended instruction (correct / not correct), reported by subject.

Layout: the ``yale-nlp/MMVU`` download: ``validation.json`` (``id, video, question, choices, answer,
question_type, metadata.subject``; ``video`` a URL ending in ``videos/<subject>/<n>.mp4``) and the ``videos/``
folder beside it (the GitHub repository's copy is ``data/validation.json``, without videos).
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, LoadContext, Metric, mcq_item
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.metrics.judge import MMVU_OPEN_ENDED
from caprl.eval.types import EvalItem


def video_path(value: str) -> str:
    """``https://.../resolve/main/videos/Art/1.mp4`` → ``videos/Art/1.mp4``."""
    for marker in ("/resolve/main/", "/blob/main/"):
        if marker in value:
            return value.split(marker, 1)[1]
    return value


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        media_id, media = ctx.video(video_path(str(pick(row, "video", "video_path"))), row=row)
        meta = row.get("metadata") or {}
        subject = meta.get("subject") if isinstance(meta, dict) else None
        common = dict(
            id=ctx.next_id(row, "id", "index"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            category=subject or pick(row, "question_type"),
            extra={"question_type": pick(row, "question_type")},
        )
        choices = row.get("choices") or {}
        if isinstance(choices, dict) and choices and pick(row, "question_type") != "open-ended":
            letters = sorted(k for k, v in choices.items() if v not in (None, ""))
            yield mcq_item(options=[str(choices[k]) for k in letters], answer=pick(row, "answer"), **common)
        else:
            yield EvalItem(answers=[str(pick(row, "answer"))], **common)


MMVU = Benchmark(
    name="mmvu",
    title="MMVU (validation)",
    modality="video",
    data=DataSpec(
        download=("HF dataset yale-nlp/MMVU: validation.json and videos/",),
        layout="the dataset folder (or validation.json) with videos/ beside it",
        layouts=(Layout("yale-nlp/MMVU", ("**/validation.json",)),),
    ),
    load=load,
    metric=Metric("judged_accuracy", judge=MMVU_OPEN_ENDED),
)
