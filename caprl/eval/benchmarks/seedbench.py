"""SEED-Bench, image questions (14,233 four-way MCQs over 9 dimensions), and a fixed 2,000-question subset.

CapRL reports a 2k subset without publishing its ids; ``seedbench-2k`` is ours: the 2,000 question ids first in
a stable hash order, the same on every machine and in every format.

Layouts (the first found is read): the HF parquet of ``lmms-lab/SEED-Bench`` (``test-*.parquet``: ``choice_a``-
``choice_d``, ``data_type``, ``image`` list); VLMEvalKit's ``SEEDBench_IMG.tsv``; or the original release,
``SEED-Bench.json`` (``{"questions": [...]}``) with the images unzipped into ``SEED-Bench-image/``, where a row's
``data_id`` (e.g. ``1454426_2591111986``) is the image's file name, opened as it is (the official ``eval.py``
joins it to the image folder) or, when the file carries an extension, with it. Video questions (dimensions 10-12)
are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, LoadContext, letter_columns, mcq_item
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.types import EvalItem

# What an image named by ``data_id`` may be called on disk besides its bare name.
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")

DIMENSIONS = {
    1: "Scene Understanding",
    2: "Instance Identity",
    3: "Instance Attributes",
    4: "Instance Location",
    5: "Instances Counting",
    6: "Spatial Relation",
    7: "Instance Interaction",
    8: "Visual Reasoning",
    9: "Text Understanding",
}


def _category(row: dict) -> str | None:
    kind = pick(row, "question_type_id")
    if kind is not None and str(kind).isdigit():
        return DIMENSIONS.get(int(kind), str(kind))
    return pick(row, "category")


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        if str(pick(row, "data_type", default="image")) != "image":
            continue
        options = letter_columns(row) or [str(row[f"choice_{c}"]) for c in "abcd" if row.get(f"choice_{c}")]
        if pick(row, "image") is not None:
            media_id, media = ctx.image(row["image"], name=pick(row, "data_id"))
        else:
            data_id = str(pick(row, "data_id"))
            media_id, media = ctx.image_file(data_id, row, alternatives=[data_id + e for e in _IMAGE_EXTENSIONS])
        yield mcq_item(
            id=ctx.next_id(row, "question_id", "index"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            options=options,
            answer=pick(row, "answer"),
            category=_category(row),
        )


_DATA = DataSpec(
    download=(
        "HF dataset lmms-lab/SEED-Bench (test parquet)",
        "VLMEvalKit SEEDBench_IMG.tsv",
        "the original release: SEED-Bench.json and SEED-Bench-image/",
    ),
    layout="the download folder (or the file itself); the original release: SEED-Bench.json with SEED-Bench-image/",
    media_dir="SEED-Bench-image",
    layouts=(
        Layout("HF parquet", ("**/test-*.parquet",)),
        Layout("VLMEvalKit TSV", ("**/SEEDBench_IMG.tsv",)),
        Layout("original release", ("**/SEED-Bench.json",)),
    ),
)
SEEDBENCH = Benchmark(name="seedbench", title="SEED-Bench (image)", modality="image", data=_DATA, load=load)
SEEDBENCH_2K = Benchmark(
    name="seedbench-2k",
    title="SEED-Bench (image, 2k subset)",
    modality="image",
    data=_DATA,
    load=load,
    subset=2000,
    data_from="seedbench",
)
