"""Random scene graphs from a seed: still images (`make_image_scene`) and short videos (`make_video_scene`).

Each scene draws from ``random.Random(<string key>)``; Python seeds string keys through SHA-512, so a scene is the
same on every machine and in every process (independent of ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import random

from caprl.synth.scene import Event, Scene, SceneObject
from caprl.synth.vocab import COLOUR_NAMES, COLS, DIRECTIONS, ROWS, SHAPES, SIZES, TITLES

MAX_VIDEO_SECONDS = 8
MIN_VIDEO_SECONDS = 4


def _check_size(size: int) -> None:
    if size <= 0 or size % 28:
        raise ValueError(f"size must be a positive multiple of 28 (the VLM patch grid), got {size}")


def make_image_scene(seed: int, *, size: int = 224, min_objects: int = 2, max_objects: int = 7) -> Scene:
    """A still scene: 2-7 objects on the 3x3 grid, an optional title, optional number labels."""
    _check_size(size)
    if not 1 <= min_objects <= max_objects <= ROWS * COLS:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {ROWS * COLS}")
    rng = random.Random(f"shapes-image:{seed}")
    n = rng.randint(min_objects, max_objects)
    # A small per-scene palette makes repeats (two red circles) common, so counting and disambiguation matter.
    colours = rng.sample(COLOUR_NAMES, rng.randint(2, 4))
    shapes = rng.sample(SHAPES, rng.randint(2, 4))
    cells = sorted(rng.sample(range(ROWS * COLS), n))
    labelled = rng.random() < 0.5
    numbers = rng.sample(range(1, 100), n)
    objects = []
    for i, cell in enumerate(cells):
        label = str(numbers[i]) if labelled and rng.random() < 0.8 else None
        objects.append(
            SceneObject(
                id=i,
                shape=rng.choice(shapes),
                colour=rng.choice(colours),
                size=rng.choice(SIZES),
                row=cell // COLS,
                col=cell % COLS,
                label=label,
            )
        )
    title = rng.choice(TITLES) if rng.random() < 0.6 else None
    if title is None and not any(o.label for o in objects):
        title = rng.choice(TITLES)  # every scene carries some text to read
    return Scene(kind="image", seed=seed, width=size, height=size, objects=objects, title=title)


def _free_neighbours(row: int, col: int, taken: set[tuple[int, int]]) -> list[tuple[str, int, int]]:
    out = []
    for name, (dr, dc) in DIRECTIONS.items():
        r, c = row + dr, col + dc
        if 0 <= r < ROWS and 0 <= c < COLS and (r, c) not in taken:
            out.append((name, r, c))
    return out


def _event_times(rng: random.Random, kinds: list[str]) -> tuple[list[tuple[int, int]], int]:
    """Non-overlapping whole-second (start, end) per event, in order, and a duration that shows the end state."""
    for _ in range(50):
        t = rng.randint(1, 2)
        spans = []
        for kind in kinds:
            end = t + (rng.randint(1, 2) if kind == "move" else 0)
            spans.append((t, end))
            t = end + rng.randint(1, 2)
        needed = max(MIN_VIDEO_SECONDS, spans[-1][1] + 1)
        if needed <= MAX_VIDEO_SECONDS:
            return spans, rng.randint(needed, MAX_VIDEO_SECONDS)
    spans, t = [], 1  # tightest packing always fits: three 1-second moves end at 6
    for kind in kinds:
        end = t + (1 if kind == "move" else 0)
        spans.append((t, end))
        t = end + 1
    return spans, max(MIN_VIDEO_SECONDS, spans[-1][1] + 1)


def make_video_scene(seed: int, *, size: int = 168, fps: int = 8) -> Scene:
    """A 4-8 s scene: 2-4 objects with distinct shapes, and 2-3 events (at least one move), one per object."""
    _check_size(size)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rng = random.Random(f"shapes-video:{seed}")
    n = rng.randint(2, 4)
    # Distinct shapes let every object be named by its shape alone, even after it moves or changes colour.
    shapes = rng.sample(SHAPES, n)
    colours = rng.sample(COLOUR_NAMES, n)
    cells = sorted(rng.sample(range(ROWS * COLS), n))
    objects = [
        SceneObject(id=i, shape=shapes[i], colour=colours[i], size="large", row=cell // COLS, col=cell % COLS)
        for i, cell in enumerate(cells)
    ]
    n_events = rng.randint(2, min(3, n))
    actors = rng.sample(objects, n_events)
    kinds = ["move"] + [rng.choice(["appear", "colour", "move"]) for _ in range(n_events - 1)]
    rng.shuffle(kinds)
    # A cell any object ever occupies stays reserved, so at most one object is in a cell at any time.
    taken = {(o.row, o.col) for o in objects}
    used_colours = set(colours)
    plans: list[tuple[str, SceneObject, dict]] = []
    for kind, o in zip(kinds, actors, strict=True):
        if kind == "move":
            options = _free_neighbours(o.row, o.col, taken)
            if options:
                _, r, c = rng.choice(options)
                taken.add((r, c))
                plans.append(("move", o, {"to_row": r, "to_col": c}))
                continue
            kind = "colour"  # boxed in: change colour instead
        if kind == "colour":
            new = rng.choice([c for c in COLOUR_NAMES if c not in used_colours])
            used_colours.add(new)
            plans.append(("colour", o, {"colour": new}))
        else:
            plans.append(("appear", o, {}))
    spans, duration = _event_times(rng, [p[0] for p in plans])
    events = [
        Event(kind=kind, obj=o.id, start=start, end=end, **extra)  # type: ignore[arg-type]
        for (kind, o, extra), (start, end) in zip(plans, spans, strict=True)
    ]
    title = rng.choice(TITLES) if rng.random() < 0.4 else None
    return Scene(
        kind="video",
        seed=seed,
        width=size,
        height=size,
        objects=objects,
        title=title,
        events=events,
        duration=duration,
        fps=fps,
    )
