"""ChartQA (test: 1,250 human + 1,250 augmented questions), scored by relaxed accuracy.

Layouts (the first found is read): the HF parquet of ``ahmed-masry/ChartQA`` (``imgname, query, label, type,
image``) or ``lmms-lab/ChartQA`` (``question, answer, type, image``) as ``test-*.parquet``; a ``datasets`` arrow
copy of the test split; VLMEvalKit's ``ChartQA_TEST.tsv``; or the original release (the GitHub repository's
``ChartQA Dataset/`` or the unzipped ``ChartQA Dataset.zip``), whose rows are ``test/test_human.json`` and
``test/test_augmented.json`` (``imgname, query, label``) with the charts in ``test/png/`` — its ``annotations/``
and ``tables/`` folders are not rows.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, LoadContext, RelaxedAccuracy, literal_list
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.types import EvalItem


def _category(row: dict) -> str | None:
    kind = str(pick(row, "type", "split", "category", default=row.get("_file", "")))
    for name in ("human", "augmented"):
        if name in kind:
            return name
    return kind or None


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        name = pick(row, "imgname")
        if pick(row, "image") is not None:
            media_id, media = ctx.image(row["image"], name=name)
        else:
            media_id, media = ctx.image_file(str(name), row)
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
            "HF dataset ahmed-masry/ChartQA (data/test-*.parquet) or lmms-lab/ChartQA",
            "VLMEvalKit ChartQA_TEST.tsv",
            "the original ChartQA release: test/test_human.json, test/test_augmented.json and test/png/",
        ),
        layout="the download folder (or the file itself); the original release: its folder or its test/ folder",
        media_dir="png",
        layouts=(
            Layout("HF parquet (test split)", ("**/test-*.parquet",)),
            Layout("datasets arrow (test split)", ("**/test/*.arrow", "**/*-test.arrow")),
            Layout("VLMEvalKit TSV", ("**/ChartQA_TEST.tsv",)),
            Layout("original release", ("**/test_human.json", "**/test_augmented.json")),
        ),
    ),
    load=load,
    metric=RelaxedAccuracy("relaxed_accuracy"),
)
