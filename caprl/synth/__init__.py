"""The shapes world: images and short videos of coloured shapes from scene graphs, with exact MCQs and captions.

>>> scene = make_image_scene(7)
>>> mcqs, queries = make_mcqs(scene)
>>> all(answer_is_true(scene, q, m.gold_text) for m, q in zip(mcqs, queries))
True
>>> all(f in make_captions(scene)["exhaustive"] for q in queries for f in facts_for_query(scene, q))
True
"""

from caprl.synth.captions import LEVELS, caption, make_captions
from caprl.synth.check import answer_is_true
from caprl.synth.corpus import text_corpus
from caprl.synth.facts import facts_for_query
from caprl.synth.questions import IMAGE_KINDS, VIDEO_KINDS, make_mcqs
from caprl.synth.render import render_frame, render_image, render_png
from caprl.synth.samples import (
    generate_image_dataset,
    generate_video_dataset,
    image_sample_id,
    make_image_sample,
    make_video_sample,
    video_sample_id,
)
from caprl.synth.scene import Event, Scene, SceneObject, as_scene
from caprl.synth.seeds import item_seed
from caprl.synth.video import encode_mp4, frame_times, render_mp4
from caprl.synth.world import make_image_scene, make_video_scene

__all__ = [
    "IMAGE_KINDS",
    "LEVELS",
    "VIDEO_KINDS",
    "Event",
    "Scene",
    "SceneObject",
    "answer_is_true",
    "as_scene",
    "caption",
    "encode_mp4",
    "facts_for_query",
    "frame_times",
    "generate_image_dataset",
    "generate_video_dataset",
    "image_sample_id",
    "item_seed",
    "make_captions",
    "make_image_sample",
    "make_image_scene",
    "make_mcqs",
    "make_video_sample",
    "make_video_scene",
    "render_frame",
    "render_image",
    "render_mp4",
    "render_png",
    "text_corpus",
    "video_sample_id",
]
