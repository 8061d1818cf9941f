"""TOMATO (1,484 MCQs on visual temporal reasoning), scored by accuracy by reasoning type (``motion_type``).

Layouts (the first found is read): the ``yale-nlp/TOMATO`` GitHub release, ``data/<type>.json`` (a map of id →
``question, options, answer`` (option index), ``key``, ``motion_type``, ``demonstration_type``, ...); or the HF
parquet of ``yale-nlp/TOMATO`` (``data/<type>-00000-of-00001-<hash>.parquet``, the same fields as columns). Either
way the category is the row's ``motion_type`` (``count``, ``direction``, ``rotation``, ``shape&trend``,
``velocity&frequency``, ``visual cues``) and the question id is ``<motion_type>/<id in the JSON map>`` (the row's
position in its parquet file, which has no ids). Videos: ``videos/<demonstration_type>/<key>.mp4``.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, BenchmarkError, LoadContext, literal_list, mcq_item, video_file
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.types import EvalItem


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    position: dict[str, int] = {}
    for row in ctx.rows():
        motion = pick(row, "motion_type")
        if motion is None:
            raise BenchmarkError(f"tomato: a row of {row['_path']} has no motion_type")
        position[row["_path"]] = position.get(row["_path"], -1) + 1
        local = row.get("_key", position[row["_path"]])
        media_id, media = ctx.video(video_file(f"{row['demonstration_type']}/{row['key']}"), row=row)
        yield mcq_item(
            id=f"{motion}/{local}",
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            options=[str(o) for o in literal_list(pick(row, "options"))],
            answer=int(row["answer"]),
            category=str(motion),
        )


TOMATO = Benchmark(
    name="tomato",
    title="TOMATO",
    modality="video",
    data=DataSpec(
        download=(
            "the yale-nlp/TOMATO GitHub release (data/*.json) or HF dataset yale-nlp/TOMATO (data/*.parquet), "
            "with the videos unzipped into videos/",
        ),
        layout="the folder holding data/ and videos/",
        media_dir="videos",
        layouts=(
            Layout("GitHub release JSON", ("data/*.json",)),
            Layout("HF parquet", ("data/*.parquet",)),
        ),
    ),
    load=load,
)
