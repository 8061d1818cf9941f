"""MVBench (20 temporal tasks x 200 MCQs), scored by accuracy per task; the overall figure is their mean, which
with 200 questions per task is the plain mean over questions.

Layout: the ``OpenGVLab/MVBench`` download (point ``--data`` at its folder): ``json/<task>.json`` (``video,
question, candidates, answer`` and, for some tasks, ``start``/``end`` seconds) and the unzipped videos under
``video/``. Each task's videos live in their own source folder (``TASKS``), at ``video/<source>/...`` or, as some
of the archives unzip, ``video/data0613/<source>/...`` (VLMEvalKit moves those into place; lmms-eval looks in
both; so does caprl). One task (episodic reasoning) ships folders of frames at 3 fps instead of video files.
The gold ``answer`` is the text of one candidate (as both harnesses read it), never a letter: a candidate that is
itself one letter long stays an option text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from caprl.eval.benchmarks.base import Benchmark, BenchmarkError, LoadContext, literal_list
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.types import EvalItem

# task (json file stem) -> folder of its videos under video/, and whether questions are about a [start, end] clip
TASKS: dict[str, tuple[str, bool]] = {
    "action_sequence": ("star/Charades_v1_480", True),
    "action_prediction": ("star/Charades_v1_480", True),
    "action_antonym": ("ssv2_video", False),
    "fine_grained_action": ("Moments_in_Time_Raw/videos", False),
    "unexpected_action": ("FunQA_test/test", False),
    "object_existence": ("clevrer/video_validation", False),
    "object_interaction": ("star/Charades_v1_480", True),
    "object_shuffle": ("perception/videos", False),
    "moving_direction": ("clevrer/video_validation", False),
    "action_localization": ("sta/sta_video", True),
    "scene_transition": ("scene_qa/video", False),
    "action_count": ("perception/videos", False),
    "moving_count": ("clevrer/video_validation", False),
    "moving_attribute": ("clevrer/video_validation", False),
    "state_change": ("perception/videos", False),
    "fine_grained_pose": ("nturgbd", False),
    "character_order": ("perception/videos", False),
    "egocentric_navigation": ("vlnqa", False),
    "episodic_reasoning": ("tvqa/frames_fps3_hq", True),
    "counterfactual_inference": ("clevrer/video_validation", False),
}


# Where some of MVBench's archives unzip to, under video/.
UNZIPPED_PREFIX = "data0613"


def gold_by_text(answer: str, candidates: list[str], where: str) -> int:
    """The index of the one candidate whose text is the answer."""
    hits = [i for i, c in enumerate(candidates) if c == answer]
    if len(hits) != 1:
        raise BenchmarkError(
            f"mvbench: {where}: the answer {answer!r} is {'not' if not hits else 'more than once'} among the "
            f"candidates {candidates!r}"
        )
    return hits[0]


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        task = Path(str(row.get("_file", ""))).stem
        if task not in TASKS:
            raise BenchmarkError(f"mvbench: {row['_path']} is not one of MVBench's 20 task files ({', '.join(TASKS)})")
        folder, bounded = TASKS[task]
        clip = None
        if bounded and row.get("start") is not None and row.get("end") is not None:
            clip = (float(row["start"]), float(row["end"]))
        relative = f"{folder}/{row['video']}"
        media_id, media = ctx.video(relative, clip, row, alternatives=[f"{UNZIPPED_PREFIX}/{relative}"])
        candidates = [str(c) for c in literal_list(pick(row, "candidates"))]
        item_id = f"{task}/{ctx.next_id(row, 'question_id')}"
        yield EvalItem(
            id=item_id,
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            options=candidates,
            gold=gold_by_text(str(pick(row, "answer")), candidates, item_id),
            category=task,
            extra={"clip": list(clip)} if clip else {},
        )


MVBENCH = Benchmark(
    name="mvbench",
    title="MVBench",
    modality="video",
    data=DataSpec(
        download=("HF dataset OpenGVLab/MVBench: json/ and video/ (unzip every archive under video/)",),
        layout="the dataset folder holding json/ and video/",
        media_dir="video",
        layouts=(Layout("OpenGVLab/MVBench", ("json/*.json",)),),
    ),
    load=load,
)
