"""How true a shapes-world caption is: every sentence parsed, every statement checked against the scene graph.

Captions in the shapes world are written in the generator's own sentences (``caprl.synth.facts`` and the
reference levels of ``caprl.synth.captions``), so a statement can be read exactly: a sentence either matches one
of those forms and is checked field by field, or it is counted as **unread** — never as true. A stuttering
"There in total." is unread; "There is a large red circle in the top left." with a blue circle there is a false
colour.

Per caption (:func:`check_caption`): the statements with their verdicts, and the claims they make, by attribute —
``cell``, ``size``, ``shape``, ``colour``, ``label``, ``count``, ``title``, ``object`` (a named object exists:
"including a red circle") and for videos ``event`` (it happened) and ``time`` (at the stated time). Over captions
(:func:`truth_summary`): precision by attribute (share of stated claims that are true), recall (share of the
scene's facts stated truly), and CHAIR-style hallucination figures: the share of captions with at least one false
object statement, false object statements per caption, and **invented objects** (a stated object with no object of
that colour and shape in the scene, or none in the stated cell).

>>> scene = {"kind": "image", "seed": 0, "width": 84, "height": 84, "title": None,
...          "objects": [{"id": 0, "shape": "circle", "colour": "red", "size": "large", "row": 0, "col": 0}]}
>>> t = check_caption(scene, "There is a large blue circle in the top left. There in total.")
>>> [(s.kind, s.true) for s in t.statements], t.unread
([('object', False)], ['There in total.'])
>>> t.claims["colour"], t.claims["cell"]
([False], [True])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from caprl.synth import facts as F
from caprl.synth.scene import Scene, SceneObject, as_scene
from caprl.synth.vocab import CELL_OF_NAME, COLOUR_NAMES, NUMBER_WORDS, SHAPES

IMAGE_ATTRIBUTES: tuple[str, ...] = ("object", "cell", "size", "shape", "colour", "label", "count", "title")
VIDEO_ATTRIBUTES: tuple[str, ...] = ("object", "cell", "shape", "colour", "count", "event", "time", "title")

_C = "|".join(COLOUR_NAMES)
_S = "|".join(SHAPES)
_CELL = "|".join(sorted(CELL_OF_NAME, key=len, reverse=True))
_STAMP = r"\[(\d{2}):(\d{2})\]"
_RANGE = r"\[(\d{2}):(\d{2}) - (\d{2}):(\d{2})\]"


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Still images (caprl.synth.facts / captions): one pattern per sentence form the generator writes.
_OBJECT = _re(rf"^There is an? (small|large) ({_C}) ({_S}) in the ({_CELL})(?:, labelled (\w+))?\.$")
_TOTAL = _re(r"^There (?:is|are) (\d+) objects? in total\.$")
_COUNT = _re(rf"^There (?:is|are) (\d+) (?:({_C}) )?(?:({_S})s?|objects?)\.$")
_NONE_COMBO = _re(rf"^There are no ({_C}) ({_S})s\.$")
_NONE_COLOURS = _re(rf"^There are no ((?:(?:{_C}), )*(?:{_C})(?: or (?:{_C}))?) objects\.$")
_NONE_SHAPES = _re(rf"^There are no ((?:(?:{_S})s, )*(?:{_S})s(?: or (?:{_S})s)?)\.$")
_TITLE = _re(r'^The title at the top reads "(.+)"\.$')
_GROUP_IMAGE = _re(r"^The image shows (.+)\.$")
_TERSE_IMAGE = _re(
    r"^(?:An image with (?:two|a few|several) coloured shapes, including"
    r"|A picture of (?:two|a few|several) shapes on a white background, one of them"
    r"|Some coloured shapes, including"
    r"|A simple graphic with (?:two|a few|several) shapes, such as) (.+)\.$"
)
# Videos.
_V_START_COUNT = _re(rf"^{_STAMP} The video starts with (\d+) objects?\.$")
_V_START_OBJECT = _re(rf"^An? ({_C}) ({_S}) is in the ({_CELL})\.$")
_V_APPEAR = _re(rf"^{_STAMP} An? ({_C}) ({_S}) appears in the ({_CELL})\.$")
_V_TURN = _re(rf"^{_STAMP} The ({_C}) ({_S}) turns ({_C})\.$")
_V_MOVE = _re(rf"^{_RANGE} The ({_C}) ({_S}) moves (left|right|up|down) from the ({_CELL}) to the ({_CELL})\.$")
_V_END_COUNT = _re(rf"^{_STAMP} At the end of the video, there (?:is|are) (\d+) objects?\.$")
_V_END_OBJECT = _re(rf"^At the end, the ({_S}) is ({_C}) and in the ({_CELL})\.$")
_V_GROUP = _re(rf"^{_STAMP} The video shows (.+)\.$")
_V_THEN = _re(r"^Then (.+)\.$")
_V_TERSE = _re(
    rf"^{_RANGE} (?:A short video of (?:two|a few|several) coloured shapes, including"
    r"|A clip of (?:two|a few|several) shapes moving around, one of them"
    r"|Some coloured shapes change over time, including) (.+)\.$"
)
_EVENT_PHRASE = _re(
    rf"^(?:an? (?:{_C}) (?:{_S}) appears|the (?:{_S}) turns (?:{_C})|the (?:{_S}) moves (?:left|right|up|down))$"
)
_MENTION = _re(rf"^(an?|{'|'.join(NUMBER_WORDS[1:])}) ({_C}) ({_S})s?$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Statement:
    """One read sentence: its form (``object``, ``count``, ``title``, ``mention``, ``event`` ...), whether all it
    says is true, and its claims by attribute."""

    text: str
    kind: str
    claims: dict[str, bool]
    invented: int = 0
    """Objects it names that the scene does not have (no such colour and shape; none in the stated cell)."""

    @property
    def true(self) -> bool:
        return all(self.claims.values())

    @property
    def about_objects(self) -> bool:
        return self.kind in ("object", "mention", "start-object", "end-object", "appear")


@dataclass
class CaptionTruth:
    statements: list[Statement] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    """Sentences that match no form the checker knows: reported, never counted as true."""
    stated: set[str] = field(default_factory=set)
    """The scene's facts this caption states truly (keys of :func:`scene_facts`)."""

    @property
    def claims(self) -> dict[str, list[bool]]:
        out: dict[str, list[bool]] = {}
        for s in self.statements:
            for attr, ok in s.claims.items():
                out.setdefault(attr, []).append(ok)
        return out

    @property
    def false_object_statements(self) -> int:
        return sum(s.about_objects and not s.true for s in self.statements)

    @property
    def invented_objects(self) -> int:
        return sum(s.invented for s in self.statements)


def sentences(caption: str) -> list[str]:
    return [s for s in (x.strip() for x in _SENTENCE_END.split(" ".join(caption.split()))) if s]


def _cell(name: str) -> tuple[int, int]:
    return CELL_OF_NAME[name.lower()]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# --- the scene's facts (for recall) -------------------------------------------------------------------------------


def scene_facts(scene: Scene | dict[str, Any]) -> set[str]:
    """The atomic facts a caption can state about ``scene``, as keys: per object ``cell:r,c`` (an object there),
    ``size:r,c``, ``shape:r,c``, ``colour:r,c``, ``label:r,c``; ``total``; ``title``. For videos: the sentences of
    the exhaustive caption (start layout, every event, end state), each a key ``sentence:<text>``."""
    scene = as_scene(scene)
    if scene.kind == "video":
        from caprl.synth.captions import video_captions

        keys = {f"sentence:{_norm(s)}" for s in sentences(video_captions(scene)["exhaustive"])}
        return {k for k in keys if not k.startswith("sentence:the title")} | ({"title"} if scene.title else set())
    out = {"total"} | ({"title"} if scene.title else set())
    for o in scene.objects:
        at = f"{o.row},{o.col}"
        out |= {f"cell:{at}", f"size:{at}", f"shape:{at}", f"colour:{at}"}
        if o.label is not None:
            out.add(f"label:{at}")
    return out


# --- images ---------------------------------------------------------------------------------------------------


def _count(scene: Scene, colour: str | None, shape: str | None) -> int:
    return sum((colour is None or o.colour == colour) and (shape is None or o.shape == shape) for o in scene.objects)


def _mentions(group: str) -> list[tuple[int, str, str]] | None:
    """``two red circles, a blue square and a green star`` -> [(2, red, circle), (1, blue, square), ...]."""
    parts = re.split(r", | and ", group)
    out = []
    for p in parts:
        m = _MENTION.match(p.strip())
        if not m:
            return None
        n = 1 if m.group(1).lower() in ("a", "an") else NUMBER_WORDS.index(m.group(1).lower())
        out.append((n, m.group(2).lower(), m.group(3).lower()))
    return out


def _mention_statement(text: str, group: str, objects: Sequence[SceneObject], exact_counts: bool) -> Statement | None:
    found = _mentions(group)
    if found is None:
        return None
    claims: dict[str, bool] = {}
    invented = 0
    objects_ok, counts_ok = True, True
    for n, colour, shape in found:
        have = sum(o.colour == colour and o.shape == shape for o in objects)
        objects_ok &= have > 0
        invented += have == 0
        counts_ok &= have == n if exact_counts else True
    claims["object"] = objects_ok
    if exact_counts:
        claims["count"] = counts_ok
    return Statement(text, "mention", claims, invented)


def _image_statement(scene: Scene, text: str, stated: set[str]) -> Statement | None:
    if m := _OBJECT.match(text):
        size, colour, shape, cell, label = (g.lower() if g else g for g in m.groups())
        r, c = _cell(cell)
        o = next((x for x in scene.objects if (x.row, x.col) == (r, c)), None)
        claims = {
            "cell": o is not None,
            "size": o is not None and o.size == size,
            "colour": o is not None and o.colour == colour,
            "shape": o is not None and o.shape == shape,
        }
        if label is not None:
            claims["label"] = o is not None and str(o.label).lower() == label
        if o is not None:
            stated.update(f"{a}:{r},{c}" for a, ok in claims.items() if ok)
        invented = o is None or not any(x.colour == colour and x.shape == shape for x in scene.objects)
        return Statement(text, "object", claims, int(invented))
    if m := _TOTAL.match(text):
        ok = int(m.group(1)) == len(scene.objects)
        if ok:
            stated.add("total")
        return Statement(text, "count", {"count": ok})
    if m := _COUNT.match(text):
        n, colour, shape = int(m.group(1)), m.group(2), m.group(3)
        ok = n == _count(scene, colour and colour.lower(), shape and shape.lower())
        return Statement(text, "count", {"count": ok})
    if m := _NONE_COMBO.match(text):
        return Statement(text, "count", {"count": _count(scene, m.group(1).lower(), m.group(2).lower()) == 0})
    if m := _NONE_COLOURS.match(text):
        colours = re.split(r", | or ", m.group(1).lower())
        return Statement(text, "count", {"count": all(_count(scene, c, None) == 0 for c in colours)})
    if m := _NONE_SHAPES.match(text):
        shapes = [s[:-1] for s in re.split(r", | or ", m.group(1).lower())]
        return Statement(text, "count", {"count": all(_count(scene, None, s) == 0 for s in shapes)})
    if m := _TITLE.match(text):
        ok = scene.title is not None and _norm(m.group(1)) == _norm(scene.title)
        if ok:
            stated.add("title")
        return Statement(text, "title", {"title": ok})
    if m := _GROUP_IMAGE.match(text):
        return _mention_statement(text, m.group(1), scene.objects, exact_counts=True)
    if m := _TERSE_IMAGE.match(text):
        return _mention_statement(text, m.group(1), scene.objects, exact_counts=False)
    return None


# --- videos ---------------------------------------------------------------------------------------------------


def _video_statement(scene: Scene, text: str, truths: dict[str, str], stated: set[str]) -> Statement | None:
    """``truths`` maps each true sentence with its timestamps removed to the sentence itself."""
    key = _norm(text)
    untimed = _norm(re.sub(r"^\[[^\]]*\]\s*", "", text))

    def exact() -> bool:
        ok = f"sentence:{key}" in truths
        if ok:
            stated.add(f"sentence:{key}")
        return ok

    def event_claims() -> dict[str, bool]:
        happened = untimed in truths.values()
        return {"event": happened, "time": happened and exact()}

    start = F.start_objects(scene)
    if m := _V_START_COUNT.match(text):
        return Statement(text, "count", {"count": exact()})
    if m := _V_END_COUNT.match(text):
        return Statement(text, "count", {"count": exact()})
    if m := _V_START_OBJECT.match(text):
        colour, shape, cell = (g.lower() for g in m.groups())
        same = [o for o in start if o.shape == shape]
        ok = exact()
        claims = {
            "shape": bool(same),
            "colour": any(o.colour == colour for o in same),
            "cell": any((o.row, o.col) == _cell(cell) for o in same),
        }
        claims = {k: v or ok for k, v in claims.items()}
        return Statement(text, "start-object", claims, int(not any(o.colour == colour for o in same)))
    if m := _V_END_OBJECT.match(text):
        shape, colour, cell = (g.lower() for g in m.groups())
        finals = [F.final_state(scene, o) for o in scene.objects if o.shape == shape]
        claims = {
            "shape": bool(finals),
            "colour": any(f[0] == colour for f in finals),
            "cell": any(f[1:] == _cell(cell) for f in finals),
        }
        exact()
        return Statement(text, "end-object", claims, int(not finals))
    if m := _V_APPEAR.match(text):
        colour, shape = m.group(3).lower(), m.group(4).lower()
        invented = not any(o.shape == shape and o.colour == colour for o in scene.objects)
        return Statement(text, "appear", event_claims(), int(invented))
    if _V_TURN.match(text) or _V_MOVE.match(text):
        return Statement(text, "event", event_claims())
    if m := _TITLE.match(text):
        ok = scene.title is not None and _norm(m.group(1)) == _norm(scene.title)
        if ok:
            stated.add("title")
        return Statement(text, "title", {"title": ok})
    if m := _V_GROUP.match(text):
        return _mention_statement(text, m.group(3), start, exact_counts=True)
    if m := _V_TERSE.match(text):
        return _mention_statement(text, m.group(5), start, exact_counts=False)
    if m := _V_THEN.match(text):
        return _then_statement(scene, text, m.group(1))
    return None


def _then_statement(scene: Scene, text: str, events: str) -> Statement | None:
    """``Then a red star appears and the circle turns green.`` (the brief video caption's event list)."""
    from caprl.synth.captions import _event_phrase

    real = {_norm(_event_phrase(scene, e)) for e in scene.events}
    phrases = [p for p in (x.strip() for x in re.split(r", | and ", events)) if p]
    form = _re(
        rf"^(?:an? (?:{_C}) (?:{_S}) appears|the (?:{_S}) turns (?:{_C})|the (?:{_S}) moves (?:left|right|up|down))$"
    )
    if not all(form.match(p) for p in phrases):
        return None
    return Statement(text, "event", {"event": all(_norm(p) in real for p in phrases)})


# --- public -------------------------------------------------------------------------------------------------------


def check_caption(scene: Scene | dict[str, Any], caption: str) -> CaptionTruth:
    """Every sentence of ``caption`` read and checked against ``scene`` (a Scene or its dict form)."""
    scene = as_scene(scene)
    out = CaptionTruth()
    truths: dict[str, str] = {}
    if scene.kind == "video":
        truths = {k: re.sub(r"^\[[^\]]*\]\s*", "", k.removeprefix("sentence:")) for k in scene_facts(scene) if ":" in k}
    for text in sentences(caption):
        if scene.kind == "video":
            st = _video_statement(scene, text, truths, out.stated)
        else:
            st = _image_statement(scene, text, out.stated)
        if st is None:
            out.unread.append(text)
        else:
            out.statements.append(st)
    return out


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def truth_summary(scenes: Sequence[Scene | dict[str, Any]], captions: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Precision, recall and hallucination figures over every caption of every scene (``captions[i]`` are the
    captions of ``scenes[i]``). Shares are None where nothing was stated."""
    claims: dict[str, list[bool]] = {}
    n_captions = n_statements = n_true = n_unread = n_sentences = 0
    with_false_object = false_objects = invented = object_statements = 0
    facts_total = facts_stated = 0
    for scene, caps in zip(scenes, captions, strict=True):
        facts = scene_facts(scene)
        for cap in caps:
            t = check_caption(scene, cap)
            n_captions += 1
            n_statements += len(t.statements)
            n_true += sum(s.true for s in t.statements)
            n_unread += len(t.unread)
            n_sentences += len(t.statements) + len(t.unread)
            for attr, oks in t.claims.items():
                claims.setdefault(attr, []).extend(oks)
            object_statements += sum(s.about_objects for s in t.statements)
            false_objects += t.false_object_statements
            invented += t.invented_objects
            with_false_object += t.false_object_statements > 0
            facts_total += len(facts)
            facts_stated += len(t.stated & facts)
    return {
        "captions": n_captions,
        "statements": n_statements,
        "statements_per_caption": _share(n_statements, n_captions),
        "precision": _share(n_true, n_statements),
        "precision_by_attribute": {a: _share(sum(v), len(v)) for a, v in sorted(claims.items())},
        "claims_by_attribute": {a: len(v) for a, v in sorted(claims.items())},
        "recall": _share(facts_stated, facts_total),
        # CHAIR-style: captions with at least one false object statement; false ones among object statements.
        "hallucination_rate": _share(with_false_object, n_captions),
        "false_object_share": _share(false_objects, object_statements),
        "false_objects_per_caption": _share(false_objects, n_captions),
        "invented_objects_per_caption": _share(invented, n_captions),
        "unread_sentences": n_unread,
        "unread_share": _share(n_unread, n_sentences),
    }
