"""Fact sentences derived from a scene graph, and which of them answer a given query.

Captions are assembled from these exact sentences, so "does this caption carry the answer to that question?"
is a substring test: ``all(f in caption for f in facts_for_query(scene, query))``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from caprl.synth.refer import matches
from caprl.synth.scene import Event, Scene, SceneObject, as_scene
from caprl.synth.vocab import COLOUR_NAMES, SHAPES, cell_name, fmt_range, fmt_time, plural, with_article

# --- still images -------------------------------------------------------------------------------------------


def title_fact(scene: Scene) -> str | None:
    return None if scene.title is None else f'The title at the top reads "{scene.title}".'


def object_fact(o: SceneObject) -> str:
    """Everything about one object: ``There is a large red circle in the top left, labelled 12.``"""
    where = cell_name(o.row, o.col)
    text = f"There is {with_article(f'{o.size} {o.colour} {o.shape}')} in the {where}"
    if o.label is not None:
        text += f", labelled {o.label}"
    return text + "."


def _count_sentence(n: int, singular: str, plural_: str) -> str:
    return f"There is 1 {singular}." if n == 1 else f"There are {n} {plural_}."


def count_fact(scene: Scene, colour: str | None = None, shape: str | None = None) -> str:
    """``There are 2 red circles.`` / ``There are 5 objects in total.`` / ``There are no green objects.``"""
    n = sum((colour is None or o.colour == colour) and (shape is None or o.shape == shape) for o in scene.objects)
    if colour is None and shape is None:
        return "There is 1 object in total." if n == 1 else f"There are {n} objects in total."
    if n == 0 and colour and shape:
        return f"There are no {colour} {plural(shape)}."
    if n == 0:
        return absent_colours_fact(scene) if shape is None else absent_shapes_fact(scene)
    noun = f"{colour} " if colour else ""
    if shape:
        return _count_sentence(n, noun + shape, noun + plural(shape))
    return _count_sentence(n, noun + "object", noun + "objects")


def absent_colours_fact(scene: Scene) -> str:
    present = {o.colour for o in scene.objects}
    return f"There are no {_or_list([c for c in COLOUR_NAMES if c not in present])} objects."


def absent_shapes_fact(scene: Scene) -> str:
    present = {o.shape for o in scene.objects}
    return f"There are no {_or_list([plural(s) for s in SHAPES if s not in present])}."


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def count_facts(scene: Scene) -> list[str]:
    """Per colour, per shape, per colour+shape, then what is absent: the counting part of an exhaustive caption."""
    colours = Counter(o.colour for o in scene.objects)
    shapes = Counter(o.shape for o in scene.objects)
    combos = Counter((o.colour, o.shape) for o in scene.objects)
    out = [count_fact(scene, colour=c) for c in COLOUR_NAMES if c in colours]
    out += [count_fact(scene, shape=s) for s in SHAPES if s in shapes]
    out += [count_fact(scene, colour=c, shape=s) for (c, s) in sorted(combos, key=_combo_order)]
    if len(colours) < len(COLOUR_NAMES):
        out.append(absent_colours_fact(scene))
    if len(shapes) < len(SHAPES):
        out.append(absent_shapes_fact(scene))
    return out


def _combo_order(combo: tuple[str, str]) -> tuple[int, int]:
    return COLOUR_NAMES.index(combo[0]), SHAPES.index(combo[1])


# --- videos ----------------------------------------------------------------------------------------------------


def appears_later(scene: Scene, o: SceneObject) -> bool:
    return any(e.kind == "appear" for e in scene.events_of(o.id))


def start_objects(scene: Scene) -> list[SceneObject]:
    return [o for o in scene.objects if not appears_later(scene, o)]


def final_state(scene: Scene, o: SceneObject) -> tuple[str, int, int]:
    """(colour, row, col) after all events."""
    colour, row, col = o.colour, o.row, o.col
    for e in sorted(scene.events_of(o.id), key=lambda e: e.start):
        if e.kind == "colour":
            colour = e.colour or colour
        elif e.kind == "move":
            row, col = e.to_row, e.to_col  # type: ignore[assignment]
    return colour, row, col


def start_count_fact(scene: Scene) -> str:
    n = len(start_objects(scene))
    return f"{fmt_time(0)} The video starts with {n} object{'s' if n != 1 else ''}."


def start_object_fact(o: SceneObject) -> str:
    return f"{with_article(f'{o.colour} {o.shape}').capitalize()} is in the {cell_name(o.row, o.col)}."


def colour_before(scene: Scene, e: Event) -> str:
    o = scene.obj(e.obj)
    colour = o.colour
    for other in sorted(scene.events_of(o.id), key=lambda x: x.start):
        if other.start < e.start and other.kind == "colour":
            colour = other.colour or colour
    return colour


def event_fact(scene: Scene, e: Event) -> str:
    """One timed sentence per event, e.g. ``[00:03 - 00:05] The red circle moves right from ... to ....``"""
    o = scene.obj(e.obj)
    name = f"{colour_before(scene, e)} {o.shape}"
    if e.kind == "appear":
        return f"{fmt_time(e.start)} {with_article(name).capitalize()} appears in the {cell_name(o.row, o.col)}."
    if e.kind == "colour":
        return f"{fmt_time(e.start)} The {name} turns {e.colour}."
    src, dst = move_cells(scene, e)
    direction = move_direction(src, dst)
    return (
        f"{fmt_range(e.start, e.end)} The {name} moves {direction} from the {cell_name(*src)} to the {cell_name(*dst)}."
    )


def move_cells(scene: Scene, e: Event) -> tuple[tuple[int, int], tuple[int, int]]:
    o = scene.obj(e.obj)
    row, col = o.row, o.col
    for other in sorted(scene.events_of(o.id), key=lambda x: x.start):
        if other is e:
            break
        if other.kind == "move":
            row, col = other.to_row, other.to_col  # type: ignore[assignment]
    return (row, col), (e.to_row, e.to_col)  # type: ignore[return-value]


def move_direction(src: tuple[int, int], dst: tuple[int, int]) -> str:
    dr, dc = dst[0] - src[0], dst[1] - src[1]
    return {(0, -1): "left", (0, 1): "right", (-1, 0): "up", (1, 0): "down"}[(dr, dc)]


def end_count_fact(scene: Scene) -> str:
    n = len(scene.objects)
    there = "there is 1 object" if n == 1 else f"there are {n} objects"
    return f"{fmt_time(scene.duration)} At the end of the video, {there}."


def end_object_fact(scene: Scene, o: SceneObject) -> str:
    colour, row, col = final_state(scene, o)
    return f"At the end, the {o.shape} is {colour} and in the {cell_name(row, col)}."


# --- which facts answer a query ----------------------------------------------------------------------------------


def _resolve(scene: Scene, ref: dict[str, Any]) -> SceneObject:
    found = [o for o in scene.objects if matches(o, ref)]
    if len(found) != 1:
        raise ValueError(f"reference {ref} matches {len(found)} objects, expected exactly 1")
    return found[0]


def _event(scene: Scene, o: SceneObject, kind: str) -> Event:
    for e in scene.events_of(o.id):
        if e.kind == kind:
            return e
    raise ValueError(f"the {o.shape} has no {kind!r} event")


def _video_state_fact(scene: Scene, o: SceneObject, at: str, attr: str) -> str:
    """The sentence that states ``o``'s colour or cell at the start or the end of the video."""
    if at == "start":
        return start_object_fact(o)
    changer = "colour" if attr == "colour" else "move"
    for e in sorted(scene.events_of(o.id), key=lambda e: e.start, reverse=True):
        if e.kind == changer:
            return event_fact(scene, e)
    appear = [e for e in scene.events_of(o.id) if e.kind == "appear"]
    return event_fact(scene, appear[0]) if appear else start_object_fact(o)


def facts_for_query(scene: Scene | dict[str, Any], query: dict[str, Any]) -> list[str]:
    """The fact sentences that together answer ``query`` (all of them appear in the exhaustive caption)."""
    scene = as_scene(scene)
    kind = query["kind"]
    if kind == "text" and query.get("q") == "title":
        fact = title_fact(scene)
        if fact is None:
            raise ValueError("the scene has no title")
        return [fact]
    if scene.kind == "video":
        return _video_facts(scene, query)
    if kind == "attribute":
        return [object_fact(_resolve(scene, query["ref"]))]
    if kind == "count":
        return [count_fact(scene, colour=query.get("colour"), shape=query.get("shape"))]
    if kind == "position":
        if query["q"] == "where":
            return [object_fact(_resolve(scene, query["ref"]))]
        if query["q"] == "relative":
            return [object_fact(_resolve(scene, query["ref"])), object_fact(_resolve(scene, query["to"]))]
        if query["q"] == "which":
            return [object_fact(_resolve(scene, {"cell": query["cell"]}))]
    if kind == "text":
        if query["q"] == "label":
            return [object_fact(_resolve(scene, query["ref"]))]
        if query["q"] == "labelled":
            return [object_fact(_resolve(scene, {"label": query["label"]}))]
    raise ValueError(f"unknown image query {query}")


def _video_facts(scene: Scene, query: dict[str, Any]) -> list[str]:
    kind = query["kind"]
    if kind == "order":
        out = []
        for ev in query["events"]:
            out.append(event_fact(scene, _event(scene, _resolve(scene, ev["ref"]), ev["event"])))
        return out
    if kind == "motion":
        return [event_fact(scene, _event(scene, _resolve(scene, query["ref"]), "move"))]
    if kind == "when":
        return [event_fact(scene, _event(scene, _resolve(scene, query["ref"]), query["event"]))]
    if kind == "count":
        return [start_count_fact(scene) if query["at"] == "start" else end_count_fact(scene)]
    if kind == "attribute":
        return [_video_state_fact(scene, _resolve(scene, query["ref"]), query["at"], "colour")]
    if kind == "position":
        return [_video_state_fact(scene, _resolve(scene, query["ref"]), query["at"], "cell")]
    raise ValueError(f"unknown video query {query}")
