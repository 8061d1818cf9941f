"""Exact MCQs from a scene graph, each with the structured query behind it.

Every candidate question knows its gold answer, the plausible wrong answers (other values seen in the scene, near
numbers, neighbouring times) and the full pool of same-type answers. An MCQ takes 2-6 options from those; the gold
lands at a seeded random position. Queries are plain dicts (JSON) so they can be stored in ``Sample.metadata`` and
re-checked later by `caprl.synth.check`, which recomputes truth from the scene graph on its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from caprl.schema import MCQ
from caprl.synth import facts as F
from caprl.synth.refer import properties, ref_phrase, refer
from caprl.synth.scene import Event, Scene, SceneObject
from caprl.synth.vocab import (
    CELL_NAMES,
    COLOUR_NAMES,
    DIRECTIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    TITLES,
    cell_name,
    fmt_range,
    fmt_time,
    plural,
)

IMAGE_KINDS: tuple[str, ...] = ("attribute", "count", "position", "text")
VIDEO_KINDS: tuple[str, ...] = ("order", "motion", "when", "attribute", "count", "position", "text")
# Four options is the common case in CapRL data; 2 and 6 keep readers from relying on a fixed count.
_OPTION_COUNTS = (2, 3, 4, 4, 4, 5, 6)


@dataclass
class Candidate:
    query: dict[str, Any]
    question: str
    gold: str
    pool: list[str]
    prefer: list[str] = field(default_factory=list)
    must: list[str] = field(default_factory=list)
    """Wrong options that every MCQ from this candidate shows (the other events of an order question)."""


def _to_mcq(rng: random.Random, c: Candidate) -> MCQ | None:
    k = max(rng.choice(_OPTION_COUNTS), len(c.must) + 1)
    seen = {c.gold.lower()}
    wrong: list[str] = []
    for group in (c.must, rng.sample(c.prefer, len(c.prefer)), rng.sample(c.pool, len(c.pool))):
        for option in group:
            if len(wrong) >= k - 1:
                break
            if option.lower() not in seen:
                seen.add(option.lower())
                wrong.append(option)
    if not wrong:
        return None
    options = list(wrong)
    gold = rng.randrange(len(options) + 1)
    options.insert(gold, c.gold)
    return MCQ(question=c.question, options=options, gold=gold, kind=c.query["kind"])


def _near_numbers(n: int, top: int = 9) -> list[str]:
    return [str(x) for x in (n - 1, n + 1, n + 2, n - 2) if 0 <= x <= top]


def _title_candidate(scene: Scene, noun: str) -> list[Candidate]:
    if scene.title is None:
        return []
    return [
        Candidate(
            {"kind": "text", "q": "title"},
            f"What does the title at the top of the {noun} say?",
            scene.title,
            list(TITLES),
        )
    ]


# --- still images ---------------------------------------------------------------------------------------------


def _relation(a: SceneObject, b: SceneObject) -> str:
    vertical = "above" if a.row < b.row else "below" if a.row > b.row else ""
    horizontal = "left" if a.col < b.col else "right" if a.col > b.col else ""
    return f"{vertical} {horizontal}".strip()


def image_candidates(scene: Scene) -> list[Candidate]:
    objs = scene.objects
    present_colours = sorted({o.colour for o in objs}, key=COLOUR_NAMES.index)
    present_shapes = sorted({o.shape for o in objs}, key=SHAPES.index)
    combos = sorted({f"{o.colour} {o.shape}" for o in objs})
    all_combos = [f"{c} {s}" for c in COLOUR_NAMES for s in SHAPES]
    occupied = [cell_name(o.row, o.col) for o in objs]
    labels = [o.label for o in objs if o.label is not None]
    out: list[Candidate] = []

    for o in objs:
        props = properties(o)
        for attr, pool, prefer in (
            ("colour", COLOUR_NAMES, present_colours),
            ("shape", SHAPES, present_shapes),
            ("size", SIZES, []),
        ):
            # Asking the size of "the large red circle" would give it away; asking the colour of "the red ..." too.
            ref = refer(scene, o, avoid={attr, "size"} if attr == "size" else {attr})
            if ref is not None:
                q = f"What {attr} is {ref_phrase(ref)}?"
                out.append(
                    Candidate({"kind": "attribute", "attr": attr, "ref": ref}, q, props[attr], list(pool), prefer)
                )
        ref = refer(scene, o, avoid={"cell"})
        if ref is not None:
            q = f"Where in the image is {ref_phrase(ref)}?"
            out.append(
                Candidate({"kind": "position", "q": "where", "ref": ref}, q, props["cell"], list(CELL_NAMES), occupied)
            )
        out.append(
            Candidate(
                {"kind": "position", "q": "which", "cell": props["cell"]},
                f"Which object is in the {props['cell']}?",
                f"{o.colour} {o.shape}",
                all_combos,
                combos,
            )
        )
        if o.label is not None:
            ref = refer(scene, o, avoid={"label"})
            if ref is not None:
                q = f"What number is written under {ref_phrase(ref)}?"
                pool = [str(x) for x in range(1, 100)]
                out.append(Candidate({"kind": "text", "q": "label", "ref": ref}, q, o.label, pool, labels))
            out.append(
                Candidate(
                    {"kind": "text", "q": "labelled", "label": o.label},
                    f"Which object is labelled {o.label}?",
                    f"{o.colour} {o.shape}",
                    all_combos,
                    combos,
                )
            )

    for a, b in combinations(objs, 2):
        ra, rb = refer(scene, a, avoid={"cell"}), refer(scene, b, avoid={"cell"})
        if ra is not None and rb is not None:
            q = f"Where is {ref_phrase(ra)} relative to {ref_phrase(rb)}?"
            out.append(
                Candidate(
                    {"kind": "position", "q": "relative", "ref": ra, "to": rb}, q, _relation(a, b), list(RELATIONS)
                )
            )

    def count(colour: str | None = None, shape: str | None = None) -> Candidate:
        n = sum((colour is None or o.colour == colour) and (shape is None or o.shape == shape) for o in objs)
        noun = (
            f"{colour} {plural(shape)}" if colour and shape else f"{colour} objects" if colour else plural(shape or "")
        )
        q = "How many objects are there in total?" if not (colour or shape) else f"How many {noun} are there?"
        query = {"kind": "count", **({"colour": colour} if colour else {}), **({"shape": shape} if shape else {})}
        return Candidate(query, q, str(n), [str(x) for x in range(10)], _near_numbers(n))

    out.append(count())
    out += [count(colour=c) for c in present_colours]
    out += [count(shape=s) for s in present_shapes]
    out += [count(colour=c.split()[0], shape=c.split()[1]) for c in combos]
    absent_colours = [c for c in COLOUR_NAMES if c not in present_colours]
    absent_shapes = [s for s in SHAPES if s not in present_shapes]
    # One "none" question per kind keeps 0 a live answer; the seed picks which, so no colour is favoured.
    out += [count(colour=absent_colours[scene.seed % len(absent_colours)])] if absent_colours else []
    out += [count(shape=absent_shapes[scene.seed % len(absent_shapes)])] if absent_shapes else []
    out += _title_candidate(scene, "image")
    return out


# --- videos ---------------------------------------------------------------------------------------------------


def event_option(scene: Scene, e: Event) -> str:
    """How an event reads as an answer option: ``the circle appears`` / ``turns green`` / ``moves right``."""
    o = scene.obj(e.obj)
    if e.kind == "appear":
        return f"the {o.shape} appears"
    if e.kind == "colour":
        return f"the {o.shape} turns {e.colour}"
    return f"the {o.shape} moves {F.move_direction(*F.move_cells(scene, e))}"


def _fake_events(scene: Scene) -> list[str]:
    """Event options that did not happen: absent shapes appearing, colours nobody turns, wrong directions."""
    present = {o.shape for o in scene.objects}
    real = {event_option(scene, e) for e in scene.events}
    fakes = [f"the {s} appears" for s in SHAPES if s not in present]
    for o in scene.objects:
        fakes += [f"the {o.shape} turns {c}" for c in COLOUR_NAMES if c != o.colour]
        fakes += [f"the {o.shape} moves {d}" for d in DIRECTIONS]
        if not F.appears_later(scene, o):
            fakes.append(f"the {o.shape} appears")
    return [f for f in fakes if f not in real]


def _times(duration: int) -> list[str]:
    return [fmt_time(t) for t in range(duration + 1)]


def _ranges(duration: int) -> list[str]:
    return [fmt_range(a, b) for a in range(duration) for b in range(a + 1, duration + 1)]


def video_candidates(scene: Scene) -> list[Candidate]:
    events = sorted(scene.events, key=lambda e: e.start)
    out: list[Candidate] = []
    refs = {o.id: {"shape": o.shape} for o in scene.objects}
    fakes = _fake_events(scene)
    if len(events) >= 2:
        names = [event_option(scene, e) for e in events]
        spec = [{"ref": refs[e.obj], "event": e.kind} for e in events]
        for which, gold in (("first", names[0]), ("last", names[-1])):
            out.append(
                Candidate(
                    {"kind": "order", "which": which, "events": spec},
                    f"Which of these happens {which} in the video?",
                    gold,
                    fakes,
                    must=[n for n in names if n != gold],
                )
            )
    for e in events:
        o = scene.obj(e.obj)
        ref = refs[o.id]
        if e.kind == "move":
            direction = F.move_direction(*F.move_cells(scene, e))
            q = f"In which direction does the {o.shape} move?"
            out.append(Candidate({"kind": "motion", "ref": ref}, q, direction, list(DIRECTIONS)))
            q = f"When does the {o.shape} move?"
            prefer = [
                fmt_range(a, b)
                for a, b in (
                    (e.start - 1, e.end - 1),
                    (e.start + 1, e.end + 1),
                    (e.start, e.end + 1),
                    (e.start - 1, e.end),
                )
                if 0 <= a < b <= scene.duration
            ]
            out.append(
                Candidate(
                    {"kind": "when", "ref": ref, "event": "move"},
                    q,
                    fmt_range(e.start, e.end),
                    _ranges(scene.duration),
                    prefer,
                )
            )
        else:
            q = (
                f"When does the {o.shape} appear?"
                if e.kind == "appear"
                else f"When does the {o.shape} turn {e.colour}?"
            )
            prefer = [fmt_time(t) for t in (e.start - 1, e.start + 1, e.start + 2) if 0 <= t <= scene.duration]
            out.append(
                Candidate(
                    {"kind": "when", "ref": ref, "event": e.kind}, q, fmt_time(e.start), _times(scene.duration), prefer
                )
            )

    start = F.start_objects(scene)
    for at, visible in (("start", start), ("end", scene.objects)):
        n = len(visible)
        q = f"How many objects are visible at the {at} of the video?"
        out.append(Candidate({"kind": "count", "at": at}, q, str(n), [str(x) for x in range(10)], _near_numbers(n)))
        for o in visible:
            colour, row, col = (o.colour, o.row, o.col) if at == "start" else F.final_state(scene, o)
            other_colours = [c for c in {o.colour, F.final_state(scene, o)[0]} if c != colour]
            q = f"What colour is the {o.shape} at the {at} of the video?"
            out.append(
                Candidate(
                    {"kind": "attribute", "attr": "colour", "ref": refs[o.id], "at": at},
                    q,
                    colour,
                    list(COLOUR_NAMES),
                    other_colours + [x.colour for x in scene.objects],
                )
            )
            cells = {cell_name(o.row, o.col), cell_name(*F.final_state(scene, o)[1:])}
            q = f"Where is the {o.shape} at the {at} of the video?"
            out.append(
                Candidate(
                    {"kind": "position", "q": "where", "ref": refs[o.id], "at": at},
                    q,
                    cell_name(row, col),
                    list(CELL_NAMES),
                    sorted(cells),
                )
            )
    out += _title_candidate(scene, "video")
    return out


# --- selection ------------------------------------------------------------------------------------------------


def absence_candidates(scene: Scene) -> list[Candidate]:
    """Per object, "How many <colour> <shape>s are there?" for its shape in a colour no object of that shape has
    (gold 0): the near miss a captioner invents when it gets a colour wrong."""
    out = []
    for o in scene.objects:
        taken = {x.colour for x in scene.objects if x.shape == o.shape}
        free = [c for c in COLOUR_NAMES if c not in taken]
        colour = random.Random(f"shapes-absence:{scene.seed}:{o.id}").choice(free)
        q = f"How many {colour} {plural(o.shape)} are there?"
        query = {"kind": "count", "colour": colour, "shape": o.shape}
        out.append(Candidate(query, q, "0", [str(x) for x in range(10)], _near_numbers(0) + ["1"]))
    return out


def make_mcqs(
    scene: Scene, *, n: int | None = None, seed: int | None = None, absence: bool = False
) -> tuple[list[MCQ], list[dict[str, Any]]]:
    """MCQs for a scene and their queries (parallel lists): one of each available kind first, then a random mix.

    ``n`` defaults to 6-8 (seeded); ``seed`` defaults to the scene's seed. ``absence`` (images) adds one question
    about an absent object (:func:`absence_candidates`) per question about a present one (attribute, position,
    text), so an invented object is asked about as often as a real one; the other questions stay as without it.
    """
    rng = random.Random(f"shapes-mcq:{scene.kind}:{scene.seed if seed is None else seed}")
    kinds = VIDEO_KINDS if scene.kind == "video" else IMAGE_KINDS
    pool = video_candidates(scene) if scene.kind == "video" else image_candidates(scene)
    n = rng.randint(6, 8) if n is None else n
    by_kind = {k: [c for c in pool if c.query["kind"] == k] for k in kinds}
    by_kind = {k: rng.sample(cs, len(cs)) for k, cs in by_kind.items() if cs}
    # Rounds over kinds so kinds with many candidates (pairwise relations) do not crowd out the rest: every kind
    # gets one question before any gets two. The first round follows `kinds`, which lists the temporal video
    # kinds first, so a short video question set never drops them; later rounds go in random order.
    picked: list[Candidate] = []
    order = [k for k in kinds if k in by_kind]
    while len(picked) < n and by_kind:
        for k in order:
            if len(picked) < n:
                picked.append(by_kind[k].pop())
            if not by_kind[k]:
                del by_kind[k]
        order = rng.sample(sorted(by_kind), len(by_kind))
    rng.shuffle(picked)
    mcqs: list[MCQ] = []
    queries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for c in picked:
        mcq = _to_mcq(rng, c)
        if mcq is None or c.question in seen:
            continue
        seen.add(c.question)
        mcqs.append(mcq)
        queries.append(c.query)
    if absence and scene.kind == "image":
        about_objects = sum(q["kind"] in ("attribute", "position", "text") for q in queries)
        arng = random.Random(f"shapes-absence-mcq:{scene.seed if seed is None else seed}")
        pool = list({c.question: c for c in absence_candidates(scene) if c.question not in seen}.values())
        for c in arng.sample(pool, min(about_objects, len(pool))):
            mcq = _to_mcq(arng, c)
            if mcq is not None:
                mcqs.append(mcq)
                queries.append(c.query)
    return mcqs, queries
