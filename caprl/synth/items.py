"""Shapes-world items in memory, without rendering: what a reader sees of a scene (its MCQs and its reference
captions at every level, plus the empty caption). For checks that read captions only (``caprl models check``).

Items come from a named seed *stream* (``item_seed`` hashes the stream name), so they never coincide with the
``caprl synth`` datasets (streams ``image``/``video``) that a demo or test captions and trains on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from caprl.schema import MCQ
from caprl.synth.captions import make_captions
from caprl.synth.questions import make_mcqs
from caprl.synth.seeds import item_seed
from caprl.synth.world import make_image_scene, make_video_scene

EMPTY = "empty"
"""The level name of the empty caption."""


@dataclass(frozen=True)
class SceneItem:
    id: str
    modality: str
    scene_seed: int
    mcqs: tuple[MCQ, ...]
    captions: Mapping[str, str]


def scene_item(stream: str, seed: int, index: int, *, video_every: int = 3) -> SceneItem:
    """Item ``index`` of a seed stream: every ``video_every``-th item (from the third) is a video (0: none)."""
    video = bool(video_every) and index % video_every == video_every - 1
    modality = "video" if video else "image"
    scene_seed = item_seed(seed, index, f"{stream}:{modality}")
    scene = make_video_scene(scene_seed) if video else make_image_scene(scene_seed)
    mcqs, _ = make_mcqs(scene)
    return SceneItem(
        id=f"{stream}-{seed}-{index:05d}",
        modality=modality,
        scene_seed=scene_seed,
        mcqs=tuple(mcqs),
        captions={**make_captions(scene), EMPTY: ""},
    )
