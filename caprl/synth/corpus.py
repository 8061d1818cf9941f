"""Shapes-world text for training a tokenizer: captions at every level, rendered MCQs, prompts, timestamps.

Nothing is rendered or written to disk, so a corpus of thousands of texts takes about a second.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.schema import DEFAULT_IMAGE_PROMPT, DEFAULT_VIDEO_PROMPT, LETTERS
from caprl.synth.captions import LEVELS, make_captions
from caprl.synth.questions import make_mcqs
from caprl.synth.seeds import item_seed
from caprl.synth.vocab import fmt_range, fmt_time
from caprl.synth.world import make_image_scene, make_video_scene


def _scene_texts(index: int, seed: int) -> Iterator[str]:
    # Two images per video, roughly the mix of a demo run.
    video = index % 3 == 2
    s = item_seed(seed, index, "video" if video else "image")
    scene = make_video_scene(s) if video else make_image_scene(s)
    yield DEFAULT_VIDEO_PROMPT if video else DEFAULT_IMAGE_PROMPT
    captions = make_captions(scene)
    for level in LEVELS:
        yield captions[level]
    mcqs, _ = make_mcqs(scene)
    for q in mcqs:
        yield f"{q.render()}\nAnswer: {LETTERS[q.gold]}"
    if video:
        yield " ".join([fmt_time(t) for t in range(scene.duration + 1)] + [fmt_range(0, scene.duration)])


def text_corpus(n: int = 2000, seed: int = 0) -> Iterator[str]:
    """Yield ``n`` shapes-world texts (deterministic for a seed); writes nothing."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    produced = 0
    index = 0
    while produced < n:
        for text in _scene_texts(index, seed):
            if produced >= n:
                return
            yield text
            produced += 1
        index += 1
