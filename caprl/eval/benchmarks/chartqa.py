"""ChartQA (test: human + augmented questions), scored by relaxed accuracy.

Formats: the HF parquet of ``ahmed-masry/ChartQA`` (``imgname, query, label, type, image``) or of
``lmms-lab/ChartQA`` (``question, answer, type, image``); VLMEvalKit's ``ChartQA_TEST.tsv``; or the original
release's ``test/test_human.json`` + ``test/test_augmented.json`` with the charts in ``test/png/``.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, LoadContext, RelaxedAccuracy, literal_list
from caprl.eval.data import DataSpec, pick
from caprl.eval.types import EvalItem


def _category(row: dict) -> str | None:
    kind = str(pick(row, "type", "split", "category", default=row.get("_file", "")))
    for name in ("human", "augmented"):
        if name in kind:
            return name
    return kind or None


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        image = pick(row, "image", "imgname")
        media_id, media = ctx.image(image)
        answers = [str(a) for a in literal_list(pick(row, "label", "answer"))]
        yield EvalItem(
            id=ctx.next_id(row, "index", "question_id"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "query", "question")),
            answers=answers,
            category=_category(row),
        )


CHARTQA = Benchmark(
    name="chartqa",
    title="ChartQA",
    modality="image",
    data=DataSpec(
        download=(
            "HF dataset ahmed-masry/ChartQA (the test split's parquet files) or lmms-lab/ChartQA",
            "VLMEvalKit ChartQA_TEST.tsv",
            "the original ChartQA release: test/test_human.json, test/test_augmented.json and test/png/",
        ),
        layout="a .parquet/.tsv file, or a folder holding them (JSON: the test/ folder with its png/ subfolder)",
        media_dir="png",
    ),
    load=load,
    metric=RelaxedAccuracy("relaxed_accuracy"),
    split="test",
)
