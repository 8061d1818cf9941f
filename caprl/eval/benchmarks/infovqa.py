"""InfographicVQA (validation, 2,801 questions), scored by ANLS (tau 0.5).

Formats: the HF parquet of ``lmms-lab/DocVQA`` (config ``InfographicVQA``: ``questionId, question, answers,
image``); VLMEvalKit's ``InfoVQA_VAL.tsv`` (``answer`` a list literal); or the original
``infographicsVQA_val_v1.0_withQT.json`` with the images in ``infographicsvqa_images/``.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import ANLS, Benchmark, LoadContext, literal_list
from caprl.eval.data import DataSpec, pick
from caprl.eval.types import EvalItem


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        media_id, media = ctx.image(pick(row, "image", "image_local_name"))
        kinds = literal_list(pick(row, "answer_type"))
        yield EvalItem(
            id=ctx.next_id(row, "questionId", "question_id", "index"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            answers=[str(a) for a in literal_list(pick(row, "answers", "answer"))],
            category=str(kinds[0]) if kinds else None,
        )


INFOVQA = Benchmark(
    name="infovqa",
    title="InfographicVQA",
    modality="image",
    data=DataSpec(
        download=(
            "HF dataset lmms-lab/DocVQA, config InfographicVQA, validation split (parquet)",
            "VLMEvalKit InfoVQA_VAL.tsv",
            "the RRC release: infographicsVQA_val_v1.0_withQT.json and infographicsvqa_images/",
        ),
        layout="a .parquet/.tsv/.json file, or the folder holding it (JSON: images in infographicsvqa_images/)",
        media_dir="infographicsvqa_images",
    ),
    load=load,
    metric=ANLS("anls"),
    split="val",
)
