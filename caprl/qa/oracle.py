"""A rule-based stand-in for a VLM in the shapes world, for tests and worked examples of QA curation.

It *sees* media by recognising its pixels (a fingerprint of the decoded image or frames, indexed from a shapes
dataset) and knows the scene graph behind them, so with media it answers every shapes-world question correctly
(``caprl.synth.answer_is_true``). Without media (``generate``, the reader protocol's text call) it knows only the
text: it answers when exactly one option is written in the question itself ("What colour is the red circle?")
and otherwise says it cannot see the image. So the visual-dependency filter should keep every shapes-world
question and drop every give-away one.

It implements the captioner protocol (``caption``) and the text half of the reader protocol (``generate``):

- an answer prompt (``caprl.qa.prompts.answer_prompt``) gets a letter;
- a generation prompt (``caprl.qa.prompts.generation_prompt``) gets k questions as JSON: k - ``giveaways`` drawn
  from the scene graph and ``giveaways`` that give their answer away, written in one of ``styles`` (strict JSON,
  code fence, labelled options, a bare list, prose around it, plain text), or garbage for ids in ``garbage``;
- any other prompt gets the scene's reference caption (``detailed``), for annotation examples.

``flaky[question] = m`` makes it answer that question correctly with media only the first m times it is asked
(to test thresholds exactly). ``delay`` seconds per request makes runs slow enough to be killed half way.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from caprl.captioners.base import CaptionRequest, GenerationSettings
from caprl.data.io import Dataset
from caprl.data.media import MediaError, VideoFrames, load_media
from caprl.qa.prompts import GENERATION_MARKER
from caprl.schema import LETTERS, MCQ
from caprl.synth.check import answer_is_true
from caprl.synth.questions import make_mcqs
from caprl.synth.scene import as_scene
from caprl.synth.vocab import COLOUR_NAMES

STYLES = ("json", "fenced", "labelled", "bare_list", "prose", "text")
GARBAGE = "Sure! This picture has some shapes in it, and they are very nice shapes."
_K_RE = re.compile(r"Write (\d+) multiple-choice")
_QUESTION_RE = re.compile(r"^Question: (.*?)\nOptions:\n(.*)$", re.S | re.M)
_OPTION_RE = re.compile(r"^([A-Z])\) (.*)$", re.M)


def fingerprint(media: Image.Image | VideoFrames) -> str:
    """A stable digest of decoded pixels: the same file decodes to the same digest."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(media, VideoFrames):
        h.update(np.ascontiguousarray(media.frames).tobytes())
    else:
        rgb = media.convert("RGB")
        h.update(f"{rgb.size}".encode())
        h.update(rgb.tobytes())
    return h.hexdigest()


def giveaway_mcqs(scene: Any, n: int) -> list[MCQ]:
    """Questions whose answer is written in the question: answerable without the image."""
    out = []
    for o in as_scene(scene).objects[:n]:
        others = [c for c in COLOUR_NAMES if c != o.colour][:3]
        options = [*others]
        gold = (sum(map(ord, o.shape)) + len(out)) % 4
        options.insert(gold, o.colour)
        out.append(
            MCQ(question=f"What colour is the {o.colour} {o.shape}?", options=options, gold=gold, kind="giveaway")
        )
    return out


def generated_mcqs(scene: Any, k: int, giveaways: int) -> tuple[list[MCQ], list[dict[str, Any] | None]]:
    """What the oracle writes for a scene when asked for k questions (deterministic), with their queries."""
    scene = as_scene(scene)
    n_visual = max(0, k - giveaways)
    visual, queries = make_mcqs(scene, n=n_visual, seed=scene.seed + 1) if n_visual else ([], [])
    gifts = giveaway_mcqs(scene, k - len(visual))
    return [*visual, *gifts], [*queries, *([None] * len(gifts))]


def render_questions(mcqs: list[MCQ], style: str) -> str:
    """The questions written the way a VLM might: exactly as asked, or one of the usual near-misses."""
    rows = [{"question": q.question, "options": list(q.options), "answer": q.gold_letter} for q in mcqs]
    if style == "json":
        return json.dumps({"questions": rows})
    if style == "fenced":
        return "```json\n" + json.dumps({"questions": rows}, indent=2) + "\n```"
    if style == "labelled":
        rows = [
            {
                "q": r["question"],
                "choices": [f"{LETTERS[i]}) {o}" for i, o in enumerate(r["options"])],
                "correct_answer": f"({r['answer']})",
            }
            for r in rows
        ]
        return json.dumps({"questions": rows})
    if style == "bare_list":
        return json.dumps(rows) + ","  # a stray comma after it, as models do
    if style == "prose":
        return "Here are the questions you asked for:\n" + json.dumps({"questions": rows}) + "\nI hope this helps!"
    if style == "text":
        blocks = []
        for i, q in enumerate(mcqs, start=1):
            lines = [f"{i}. {q.question}", *(f"{LETTERS[j]}) {o}" for j, o in enumerate(q.options))]
            blocks.append("\n".join([*lines, f"Answer: {q.gold_letter}"]))
        return "\n\n".join(blocks)
    raise ValueError(f"unknown style {style!r}: one of {STYLES}")


def text_answer(question: str, options: Sequence[str]) -> str | None:
    """The letter of the only option written in the question, or None."""
    q = question.lower()
    hits = [i for i, o in enumerate(options) if re.search(rf"(?<!\w){re.escape(o.lower())}(?!\w)", q)]
    return LETTERS[hits[0]] if len(hits) == 1 else None


class _Scene:
    def __init__(self, sample_id: str, index: int, scene: dict[str, Any], caption: str) -> None:
        self.sample_id, self.index, self.scene, self.caption = sample_id, index, scene, caption
        self.queries: dict[str, dict[str, Any]] = {}


class ShapesOracle:
    """See the module docstring. ``dataset``: the shapes dataset whose media it should recognise."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        giveaways: int = 1,
        styles: Sequence[str] = ("json",),
        garbage: Iterable[str] = (),
        flaky: dict[str, int] | None = None,
        delay: float = 0.0,
        max_k: int = 8,
    ) -> None:
        self.name = "oracle:shapes"
        self.giveaways = giveaways
        self.styles = tuple(styles)
        self.garbage = set(garbage)
        self.flaky = dict(flaky or {})
        self.delay = delay
        self.asked_with: Counter[str] = Counter()
        self.asked_without: Counter[str] = Counter()
        self.requests = 0
        self._by_print: dict[str, _Scene] = {}
        for index, sample in enumerate(dataset.samples):
            scene = sample.metadata.get("scene")
            if scene is None:
                continue
            try:
                media = load_media(sample, dataset.root)
            except MediaError:
                continue
            entry = _Scene(sample.id, index, scene, sample.references.get("detailed", ""))
            for mcq, query in zip(sample.mcqs, sample.metadata.get("queries", []), strict=False):
                entry.queries[mcq.question] = query
            for k in range(1, max_k + 1):
                mcqs, queries = generated_mcqs(scene, k, giveaways)
                for mcq, query in zip(mcqs, queries, strict=True):
                    if query is not None:
                        entry.queries.setdefault(mcq.question, query)
            self._by_print[fingerprint(media)] = entry

    # ---- captioner protocol -------------------------------------------------------------------------------

    def caption(
        self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None
    ) -> list[list[str]]:
        n = (settings or GenerationSettings()).n
        out = []
        for request in requests:
            self._tick()
            out.append([self._reply(request)] * n)
        return out

    def _reply(self, request: CaptionRequest) -> str:
        entry = self._by_print.get(fingerprint(request.media))
        asked = _QUESTION_RE.search(request.prompt)
        if asked:
            question, options = asked.group(1), [m.group(2) for m in _OPTION_RE.finditer(asked.group(2))]
            self.asked_with[question] += 1
            return self._answer_seeing(entry, question, options)
        if entry is None:
            return "I do not recognise this image."
        if GENERATION_MARKER in request.prompt:
            m = _K_RE.search(request.prompt)
            k = int(m.group(1)) if m else 5
            if entry.sample_id in self.garbage:
                return GARBAGE
            mcqs, _ = generated_mcqs(entry.scene, k, self.giveaways)
            return render_questions(mcqs, self.styles[entry.index % len(self.styles)])
        return entry.caption

    def _answer_seeing(self, entry: _Scene | None, question: str, options: list[str]) -> str:
        query = entry.queries.get(question) if entry is not None else None
        if query is None:
            letter = text_answer(question, options)
            return letter if letter is not None else "I cannot tell from this image."
        truth = [answer_is_true(entry.scene, query, o) for o in options]  # type: ignore[union-attr]
        if question in self.flaky and self.asked_with[question] > self.flaky[question]:
            wrong = [i for i, t in enumerate(truth) if not t]
            return LETTERS[wrong[0]]
        right = [i for i, t in enumerate(truth) if t]
        return LETTERS[right[0]] if right else "None of the options is right."

    # ---- reader protocol, text only ---------------------------------------------------------------------

    def generate(
        self, prompts: Sequence[Any], *, max_new_tokens: int = 10, temperature: float = 0.0, seed: int | None = None
    ) -> list[str]:
        out = []
        for messages in prompts:
            self._tick()
            text = messages[-1]["content"]
            asked = _QUESTION_RE.search(text)
            if not asked:
                out.append("I cannot see any image.")
                continue
            question, options = asked.group(1), [m.group(2) for m in _OPTION_RE.finditer(asked.group(2))]
            self.asked_without[question] += 1
            letter = text_answer(question, options)
            out.append(letter if letter is not None else "I cannot see the image, so I cannot tell.")
        return out

    def _tick(self) -> None:
        self.requests += 1
        if self.delay:
            time.sleep(self.delay)
