"""MVBench (20 temporal tasks x 200 MCQs), scored by accuracy per task; the overall figure is their mean, which
with 200 questions per task is the plain mean over questions.

Format: the ``OpenGVLab/MVBench`` release: ``json/<task>.json`` (``video, question, candidates, answer`` and, for
some tasks, ``start``/``end`` seconds) and ``video/<source>/...``. Each task's videos live in their own source
folder (``TASKS``); one task (episodic reasoning) ships folders of frames at 3 fps instead of video files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from caprl.eval.benchmarks.base import Benchmark, LoadContext, literal_list, mcq_item
from caprl.eval.data import DataSpec, pick
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


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        task = Path(str(row.get("_file", ""))).stem
        folder, bounded = TASKS.get(task, ("", False))
        clip = None
        if bounded and row.get("start") is not None and row.get("end") is not None:
            clip = (float(row["start"]), float(row["end"]))
        relative = f"{folder}/{row['video']}" if folder else str(row["video"])
        media_id, media = ctx.video(relative, clip)
        candidates = [str(c) for c in literal_list(pick(row, "candidates", "options"))]
        yield mcq_item(
            id=f"{task}/{ctx.next_id(row, 'question_id')}",
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            options=candidates,
            answer=str(pick(row, "answer")),
            category=task or None,
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
    ),
    load=load,
    split="json",
)
