"""The scene graph: objects on a 3x3 grid, an optional title, and (for videos) timed events.

Plain dataclasses that round-trip through JSON (``to_dict`` / ``Scene.from_dict``), because the graph is stored
in ``Sample.metadata["scene"]`` and read back by the checker and by other tools.

For a video, each object's ``colour``/``row``/``col`` are its state when it first shows; events change that state
at whole seconds: ``appear`` (invisible before ``start``), ``colour`` (new colour from ``start``) and ``move`` (to
``to_row``/``to_col``, sliding during ``[start, end]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EventKind = Literal["appear", "colour", "move"]


@dataclass
class SceneObject:
    id: int
    shape: str
    colour: str
    size: str
    row: int
    col: int
    label: str | None = None
    """Short text (a number) written under the shape, like a bar value in a chart."""


@dataclass
class Event:
    kind: EventKind
    obj: int
    start: int
    end: int
    colour: str | None = None
    to_row: int | None = None
    to_col: int | None = None


@dataclass
class Scene:
    kind: Literal["image", "video"]
    seed: int
    width: int
    height: int
    objects: list[SceneObject]
    title: str | None = None
    events: list[Event] = field(default_factory=list)
    duration: int = 0
    """Seconds (videos only)."""
    fps: int = 0

    def obj(self, obj_id: int) -> SceneObject:
        for o in self.objects:
            if o.id == obj_id:
                return o
        raise KeyError(f"no object with id {obj_id}")

    def events_of(self, obj_id: int) -> list[Event]:
        return [e for e in self.events if e.obj == obj_id]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        d = dict(data)
        d["objects"] = [SceneObject(**o) for o in d.get("objects", [])]
        d["events"] = [Event(**e) for e in d.get("events", [])]
        return cls(**d)


def as_scene(scene: Scene | dict[str, Any]) -> Scene:
    """Accept a Scene or its dict form (as stored in ``Sample.metadata["scene"]``)."""
    return scene if isinstance(scene, Scene) else Scene.from_dict(scene)
