"""InfographicVQA (validation, 2,801 questions), scored by ANLS as lmms-eval and VLMEvalKit compute it.

Layouts (the first found is read): the HF parquet of ``lmms-lab/DocVQA``, config ``InfographicVQA`` only
(``InfographicVQA/validation-*.parquet``: ``questionId, question, answers, answer_type, image``; a full download
also holds DocVQA's questions in ``DocVQA/``, which are not read), or that config's folder itself; VLMEvalKit's
``InfoVQA_VAL.tsv`` (``answer`` a list literal); or the RRC release ``infographicsVQA_val_v1.0_withQT.json`` with
the images in ``infographicsvqa_images/``.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import ANLS, Benchmark, BenchmarkError, LoadContext, literal_list
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.types import EvalItem

# Columns only DocVQA's config has: a row with them is a DocVQA question, which must not be scored as InfoVQA.
_DOCVQA_ONLY = ("docId", "ucsf_document_id", "ucsf_document_page_no")


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        if any(c in row for c in _DOCVQA_ONLY):
            raise BenchmarkError(
                f"infovqa: {row['_path']} holds DocVQA questions (column {next(c for c in _DOCVQA_ONLY if c in row)!r})"
                f"; point --data infovqa=PATH at the lmms-lab/DocVQA download (its InfographicVQA/ folder is read)"
            )
        if pick(row, "image") is not None:
            media_id, media = ctx.image(row["image"], name=pick(row, "image_local_name"))
        else:
            media_id, media = ctx.image_file(str(pick(row, "image_local_name")), row)
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
            "HF dataset lmms-lab/DocVQA, config InfographicVQA (InfographicVQA/validation-*.parquet)",
            "VLMEvalKit InfoVQA_VAL.tsv",
            "the RRC release: infographicsVQA_val_v1.0_withQT.json and infographicsvqa_images/",
        ),
        layout="the download folder (or the file itself)",
        media_dir="infographicsvqa_images",
        layouts=(
            Layout("HF lmms-lab/DocVQA, InfographicVQA config", ("**/InfographicVQA/validation-*.parquet",)),
            Layout("HF InfographicVQA config folder", ("validation-*.parquet",)),
            Layout("VLMEvalKit TSV", ("**/InfoVQA_VAL.tsv",)),
            Layout("RRC release", ("**/infographicsVQA_val_v1.0_withQT.json",)),
        ),
    ),
    load=load,
    metric=ANLS("anls"),
)
