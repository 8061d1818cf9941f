"""MMStar (1,500 four-way MCQs that need the image), scored by accuracy, by category.

Formats: the HF parquet of ``Lin-Chen/MMStar`` (options written into ``question`` after "Options:"), or
VLMEvalKit's ``MMStar.tsv`` (options in ``A``-``D`` columns, images base64).
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, BenchmarkError, LoadContext, letter_columns, mcq_item
from caprl.eval.benchmarks.base import split_inline_options as split_options
from caprl.eval.data import DataSpec, pick
from caprl.eval.types import EvalItem


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        question = str(pick(row, "question"))
        options = letter_columns(row)
        if not options:
            question, options = split_options(question)
        if len(options) < 2:
            raise BenchmarkError(f"mmstar: row {row.get('index')!r} in {row.get('_file')}: no options found")
        media_id, media = ctx.image(pick(row, "image"))
        yield mcq_item(
            id=ctx.next_id(row, "index"),
            media_id=media_id,
            media=media,
            question=question,
            options=options,
            answer=pick(row, "answer"),
            category=pick(row, "category"),
            # lmms-eval's MMStar average is the mean of the L2-category means (its scoring profile needs them)
            extra={"l2_category": pick(row, "l2_category", "l2-category")},
        )


MMSTAR = Benchmark(
    name="mmstar",
    title="MMStar",
    modality="image",
    data=DataSpec(
        download=("HF dataset Lin-Chen/MMStar (val parquet)", "VLMEvalKit MMStar.tsv"),
        layout="the .parquet/.tsv file, or the folder holding it",
    ),
    load=load,
)
