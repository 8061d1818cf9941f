"""Referring expressions: name one object so that exactly one object in the scene fits the name.

A reference is a small dict of properties (``{"colour": "red", "shape": "circle"}``, ``{"cell": "top left"}``);
``ref_phrase`` turns it into words ("the red circle", "the object in the top left"). A question never names an
object by the property it asks about, so references avoid the asked-for keys.
"""

from __future__ import annotations

from typing import Any

from caprl.synth.scene import Scene, SceneObject
from caprl.synth.vocab import cell_name

# Most natural first; position is the fallback that is always unique (one object per cell).
PREFERENCE: tuple[tuple[str, ...], ...] = (
    ("colour", "shape"),
    ("shape",),
    ("colour",),
    ("size", "shape"),
    ("size", "colour", "shape"),
    ("label",),
    ("cell",),
)


def properties(o: SceneObject) -> dict[str, Any]:
    return {"colour": o.colour, "shape": o.shape, "size": o.size, "label": o.label, "cell": cell_name(o.row, o.col)}


def matches(o: SceneObject, ref: dict[str, Any]) -> bool:
    props = properties(o)
    return all(props.get(k) == v for k, v in ref.items())


def refer(scene: Scene, o: SceneObject, *, avoid: frozenset[str] | set[str] = frozenset()) -> dict[str, Any] | None:
    """The most natural unique reference to ``o`` that uses none of the ``avoid`` keys (None if there is none)."""
    props = properties(o)
    for keys in PREFERENCE:
        if any(k in avoid or props[k] is None for k in keys):
            continue
        ref = {k: props[k] for k in keys}
        if sum(matches(other, ref) for other in scene.objects) == 1:
            return ref
    return None


def ref_phrase(ref: dict[str, Any]) -> str:
    """``{"size": "small", "colour": "red", "shape": "circle"} -> "the small red circle"``."""
    words = [ref.get("size"), ref.get("colour"), ref.get("shape") or "object"]
    phrase = "the " + " ".join(w for w in words if w)
    if ref.get("label") is not None:
        phrase += f" labelled {ref['label']}"
    if ref.get("cell") is not None:
        phrase += f" in the {ref['cell']}"
    return phrase
