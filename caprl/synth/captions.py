"""Reference captions at four levels of detail, assembled from the fact sentences in `facts`.

- ``terse``: one fluent sentence that names a single object, like a typical SFT captioner; answers almost nothing.
- ``brief``: what is there (colours, shapes, title; for videos the events in order), but no positions, sizes,
  labels or times.
- ``detailed``: title, total count and one sentence per object (size, colour, shape, cell, label); for videos the
  starting layout and every event with its ``[mm:ss]`` / ``[mm:ss - mm:ss]`` timestamp.
- ``exhaustive``: detailed plus every count (and what is absent); for videos also the end state. It contains the
  facts for every query the generator can ask.
"""

from __future__ import annotations

import random
from collections import Counter

from caprl.synth import facts as F
from caprl.synth.scene import Event, Scene, SceneObject
from caprl.synth.vocab import NUMBER_WORDS, fmt_range, fmt_time, join_and, plural, with_article

LEVELS: tuple[str, ...] = ("terse", "brief", "detailed", "exhaustive")

_TERSE_IMAGE = (
    "An image with {few} coloured shapes, including {one}.",
    "A picture of {few} shapes on a white background, one of them {one}.",
    "Some coloured shapes, including {one}.",
    "A simple graphic with {few} shapes, such as {one}.",
)
_TERSE_VIDEO = (
    "{span} A short video of {few} coloured shapes, including {one}.",
    "{span} A clip of {few} shapes moving around, one of them {one}.",
    "{span} Some coloured shapes change over time, including {one}.",
)


def _few(n: int) -> str:
    return "two" if n == 2 else "a few" if n <= 4 else "several"


def _group(objects: list[SceneObject]) -> str:
    """``two red circles, a blue square and a green star`` (first-seen order)."""
    counts = Counter((o.colour, o.shape) for o in objects)
    parts = []
    for (colour, shape), n in counts.items():
        parts.append(with_article(f"{colour} {shape}") if n == 1 else f"{NUMBER_WORDS[n]} {colour} {plural(shape)}")
    return join_and(parts)


def _rng(scene: Scene) -> random.Random:
    return random.Random(f"shapes-caption:{scene.kind}:{scene.seed}")


def image_captions(scene: Scene) -> dict[str, str]:
    rng = _rng(scene)
    one = rng.choice(scene.objects)
    terse = rng.choice(_TERSE_IMAGE).format(few=_few(len(scene.objects)), one=with_article(f"{one.colour} {one.shape}"))
    title = [t] if (t := F.title_fact(scene)) else []
    brief = [*title, f"The image shows {_group(scene.objects)}."]
    detailed = [*title, F.count_fact(scene), *(F.object_fact(o) for o in scene.objects)]
    exhaustive = [*detailed, *F.count_facts(scene)]
    return {
        "terse": terse,
        "brief": " ".join(brief),
        "detailed": " ".join(detailed),
        "exhaustive": " ".join(exhaustive),
    }


def _event_phrase(scene: Scene, e: Event) -> str:
    o = scene.obj(e.obj)
    if e.kind == "appear":
        return f"{with_article(f'{o.colour} {o.shape}')} appears"
    if e.kind == "colour":
        return f"the {o.shape} turns {e.colour}"
    src, dst = F.move_cells(scene, e)
    return f"the {o.shape} moves {F.move_direction(src, dst)}"


def video_captions(scene: Scene) -> dict[str, str]:
    rng = _rng(scene)
    events = sorted(scene.events, key=lambda e: e.start)
    start = F.start_objects(scene)
    one = rng.choice(start)
    terse = rng.choice(_TERSE_VIDEO).format(
        span=fmt_range(0, scene.duration),
        few=_few(len(scene.objects)),
        one=with_article(f"{one.colour} {one.shape}"),
    )
    title = [t] if (t := F.title_fact(scene)) else []
    brief = [
        *title,
        f"{fmt_time(0)} The video shows {_group(start)}.",
        f"Then {join_and([_event_phrase(scene, e) for e in events])}.",
    ]
    detailed = [
        *title,
        F.start_count_fact(scene),
        *(F.start_object_fact(o) for o in start),
        *(F.event_fact(scene, e) for e in events),
    ]
    exhaustive = [*detailed, F.end_count_fact(scene), *(F.end_object_fact(scene, o) for o in scene.objects)]
    return {
        "terse": terse,
        "brief": " ".join(brief),
        "detailed": " ".join(detailed),
        "exhaustive": " ".join(exhaustive),
    }


def make_captions(scene: Scene) -> dict[str, str]:
    """All four reference captions of a scene, keyed by level."""
    return video_captions(scene) if scene.kind == "video" else image_captions(scene)


def caption(scene: Scene, level: str = "detailed") -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown caption level {level!r}; choose one of {', '.join(LEVELS)}")
    return make_captions(scene)[level]
