"""An independent checker: is an option text a true answer to a query about a scene?

It recomputes truth from the scene graph alone (object fields, and for videos a simulation of the state at a
time) and never looks at the generator's gold, so tests can use it to catch generator bugs.
"""

from __future__ import annotations

import re
from typing import Any

from caprl.synth.scene import Event, Scene, SceneObject, as_scene
from caprl.synth.vocab import CELL_OF_NAME, DIRECTIONS, parse_timestamp

_EVENT_RE = re.compile(r"^the (\w+) (appears|turns (\w+)|moves (\w+))$")


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _fits(o: SceneObject, ref: dict[str, Any]) -> bool:
    for key, value in ref.items():
        if key == "cell":
            if CELL_OF_NAME.get(value) != (o.row, o.col):
                return False
        elif getattr(o, key) != value:
            return False
    return True


def _one(scene: Scene, ref: dict[str, Any]) -> SceneObject:
    found = [o for o in scene.objects if _fits(o, ref)]
    if len(found) != 1:
        raise ValueError(f"reference {ref} is ambiguous or empty: {len(found)} objects fit")
    return found[0]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _state(scene: Scene, o: SceneObject, t: float) -> tuple[bool, str, tuple[int, int]]:
    """(visible, colour, cell) of ``o`` at time ``t``; a moving object counts as in its old cell until it arrives."""
    visible, colour, cell = True, o.colour, (o.row, o.col)
    for e in sorted(scene.events, key=lambda e: e.start):
        if e.obj != o.id:
            continue
        if e.kind == "appear":
            visible = t >= e.start
        elif e.kind == "colour" and t >= e.start:
            colour = e.colour or colour
        elif e.kind == "move" and t >= e.end:
            cell = (e.to_row, e.to_col)
    return visible, colour, cell  # type: ignore[return-value]


def _at(scene: Scene, query: dict[str, Any]) -> float:
    return 0.0 if query.get("at", "start") == "start" else float(scene.duration)


def _direction_of(scene: Scene, o: SceneObject, e: Event) -> str | None:
    (_, _, (r0, c0)), (_, _, (r1, c1)) = _state(scene, o, e.start), _state(scene, o, e.end)
    delta = (_sign(r1 - r0), _sign(c1 - c0))
    return next((name for name, d in DIRECTIONS.items() if d == delta), None)


def _event_named(scene: Scene, text: str) -> Event | None:
    """The scene event an option like ``the circle turns green`` names, or None if no such event happened."""
    m = _EVENT_RE.match(_norm(text))
    if not m:
        return None
    shape, verb, colour, direction = m.group(1), m.group(2), m.group(3), m.group(4)
    for e in scene.events:
        o = scene.obj(e.obj)
        if o.shape != shape:
            continue
        if verb == "appears" and e.kind == "appear":
            return e
        if colour and e.kind == "colour" and e.colour == colour:
            return e
        if direction and e.kind == "move" and _direction_of(scene, o, e) == direction:
            return e
    return None


def _check_image(scene: Scene, query: dict[str, Any], option: str) -> bool:
    kind, q = query["kind"], query.get("q")
    if kind == "attribute":
        return _norm(str(getattr(_one(scene, query["ref"]), query["attr"]))) == option
    if kind == "count":
        if not option.isdigit():
            return False
        n = sum(all(getattr(o, k) == query[k] for k in ("colour", "shape") if k in query) for o in scene.objects)
        return n == int(option)
    if kind == "position" and q == "where":
        o = _one(scene, query["ref"])
        return CELL_OF_NAME.get(option) == (o.row, o.col)
    if kind == "position" and q == "relative":
        a, b = _one(scene, query["ref"]), _one(scene, query["to"])
        words = option.split()
        dv = -1 if "above" in words else 1 if "below" in words else 0
        dh = -1 if "left" in words else 1 if "right" in words else 0
        known = {"above", "below", "left", "right"}
        return set(words) <= known and (_sign(a.row - b.row), _sign(a.col - b.col)) == (dv, dh)
    if kind == "position" and q == "which":
        o = _one(scene, {"cell": query["cell"]})
        return option == f"{o.colour} {o.shape}"
    if kind == "text" and q == "label":
        return _one(scene, query["ref"]).label == option
    if kind == "text" and q == "labelled":
        o = _one(scene, {"label": query["label"]})
        return option == f"{o.colour} {o.shape}"
    raise ValueError(f"unknown image query {query}")


def _check_video(scene: Scene, query: dict[str, Any], option: str) -> bool:
    kind = query["kind"]
    if kind == "count":
        if not option.isdigit():
            return False
        t = _at(scene, query)
        return sum(_state(scene, o, t)[0] for o in scene.objects) == int(option)
    if kind in ("attribute", "position"):
        o = _one(scene, query["ref"])
        visible, colour, cell = _state(scene, o, _at(scene, query))
        if not visible:
            raise ValueError(f"the {o.shape} is not visible then")
        return colour == option if kind == "attribute" else CELL_OF_NAME.get(option) == cell
    if kind == "motion":
        o = _one(scene, query["ref"])
        return any(_direction_of(scene, o, e) == option for e in scene.events if e.obj == o.id and e.kind == "move")
    if kind == "when":
        o = _one(scene, query["ref"])
        span = parse_timestamp(option)
        return any((e.start, e.end) == span for e in scene.events if e.obj == o.id and e.kind == query["event"])
    if kind == "order":
        listed = []
        for spec in query["events"]:
            o = _one(scene, spec["ref"])
            listed += [e for e in scene.events if e.obj == o.id and e.kind == spec["event"]]
        named = _event_named(scene, option)
        if named is None or not any(named is e for e in listed):
            return False
        starts = [e.start for e in listed]
        target = min(starts) if query["which"] == "first" else max(starts)
        return named.start == target and starts.count(target) == 1
    raise ValueError(f"unknown video query {query}")


def answer_is_true(scene: Scene | dict[str, Any], query: dict[str, Any], option_text: str) -> bool:
    """True when ``option_text`` correctly answers ``query`` about ``scene`` (Scene or its dict form)."""
    scene = as_scene(scene)
    option = _norm(option_text)
    if query["kind"] == "text" and query.get("q") == "title":
        return scene.title is not None and _norm(scene.title) == option
    if scene.kind == "video":
        return _check_video(scene, query, option)
    return _check_image(scene, query, option)
