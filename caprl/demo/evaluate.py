"""The demo's held-out evaluation: M_Acc of a captioner on shapes-world images, with intervals and checks.

A small, self-contained Prism on the shapes world: the captioner writes ``k`` captions per held-out image
(temperature 1, as Prism), the reader answers every MCQ of the image from each caption alone (argmax letter,
options shuffled, the "cannot be answered" option appended, as the reward does), and M_Acc is the mean accuracy
over (image, caption, question). Intervals are bootstrap intervals clustered by image; a before/after change is
paired by (image, caption index, question).

Two checks that a rise in M_Acc is information, not a trick: the same captions read again with every question's
options shuffled differently (``reshuffled``, read in the same call as the main reading) must move with M_Acc,
and the reader's accuracy from an empty caption (``blind``, the floor) says how much of M_Acc is the caption's.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caprl.data.io import Dataset
from caprl.eval.stats import cluster_bootstrap
from caprl.reward.engine import RewardItem, RewardResult
from caprl.schema import MCQ
from caprl.synth.vocab import CELL_NAMES, COLOUR_NAMES, SHAPES

ScoreFn = Callable[[Sequence[RewardItem], dict[str, Any]], list[RewardResult]]
"""Scores items under reward options (the reward service client's ``score``, or an engine's)."""

READ_OPTIONS: dict[str, Any] = {"mode": "hard", "hard_choice": "argmax", "n_questions": None}
RESHUFFLE_SEED = 7919


@dataclass
class Reading:
    """Per (image, caption, question): whether the reader's argmax letter was gold; and the question's kind."""

    image: list[str] = field(default_factory=list)
    caption: list[int] = field(default_factory=list)
    question: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)

    def m_acc(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else float("nan")

    def ci95(self, seed: int = 0) -> tuple[float, float] | None:
        return cluster_bootstrap(self.correct, self.image, seed=seed)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for kind, c in zip(self.kind, self.correct, strict=True):
            out.setdefault(kind, []).append(c)
        return {k: sum(v) / len(v) for k, v in sorted(out.items())}

    def keys(self) -> list[tuple[str, int, int]]:
        return list(zip(self.image, self.caption, self.question, strict=True))


def caption_images(
    captioner_dir: Path, ds: Dataset, *, k: int, max_new_tokens: int, seed: int, on_image: Callable[[], None] = None
) -> list[list[str]]:
    """``k`` captions per held-out image, sampled at temperature 1 (seeded)."""
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.data.media import load_media

    captioner = TransformersCaptioner(str(captioner_dir), batch_size=8)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=1.0, n=k, seed=seed)
    captions: list[list[str]] = []
    for s in ds.samples:
        req = CaptionRequest(media=load_media(s, ds.root), prompt=s.prompt, id=s.id)
        captions += captioner.caption([req], settings)
        if on_image:
            on_image()
    return captions


def read(ds: Dataset, captions: Sequence[Sequence[str]], score: ScoreFn, *, seed: int = 0) -> Reading:
    """Every MCQ of every image read from each of its captions (argmax letter; ``seed`` shuffles the options)."""
    items = _items(ds, captions, lambda s: s.mcqs)
    return _reading(ds, captions, score(items, {**READ_OPTIONS, "seed": seed}))


def read_with_reshuffled(
    ds: Dataset, captions: Sequence[Sequence[str]], score: ScoreFn, *, seed: int = 0
) -> tuple[Reading, Reading]:
    """``read``, and the same captions read again with every question's options in another order (``reshuffle``),
    in one call: the reader then computes each caption, and each question's text, once for both readings. The first
    reading is ``read``'s for a reader whose answers do not depend on the batch; a real reader's last bits do, so a
    few letters can flip (3 of 169 in bfloat16 on the demo's seed 0)."""
    main = _items(ds, captions, lambda s: s.mcqs)
    again = _items(ds, captions, lambda s: reshuffle(s.mcqs, s.id))
    results = score(main + again, {**READ_OPTIONS, "seed": seed})
    return _reading(ds, captions, results[: len(main)]), _reading(ds, captions, results[len(main) :])


def reshuffle(mcqs: Sequence[MCQ], key: str) -> list[MCQ]:
    """The same questions with each one's options in another order (seeded by ``key`` and ``RESHUFFLE_SEED``), the
    gold index moved with its option. The reader's prompt shuffles again, from the options as given, so the shown
    order differs from the first reading's (except by chance, as any two shuffles may agree)."""
    rng = random.Random(f"{RESHUFFLE_SEED}:{key}")
    out = []
    for m in mcqs:
        order = list(range(len(m.options)))
        rng.shuffle(order)
        out.append(m.model_copy(update={"options": [m.options[i] for i in order], "gold": order.index(m.gold)}))
    return out


def _items(ds: Dataset, captions: Sequence[Sequence[str]], mcqs: Callable[[Any], list[MCQ]]) -> list[RewardItem]:
    return [
        RewardItem(caption=c, mcqs=mcqs(s), modality=s.media.type, id=s.id)
        for s, cs in zip(ds.samples, captions, strict=True)
        for c in cs
    ]


def _reading(ds: Dataset, captions: Sequence[Sequence[str]], results: Sequence[RewardResult]) -> Reading:
    reading = Reading()
    at = 0
    for s, cs in zip(ds.samples, captions, strict=True):
        for j in range(len(cs)):
            r = results[at]
            at += 1
            for q in r.questions:
                reading.image.append(s.id)
                reading.caption.append(j)
                reading.question.append(q.mcq_index)
                reading.kind.append(s.mcqs[q.mcq_index].kind or "other")
                reading.correct.append(float(q.chosen == q.gold))
    return reading


def paired_change(before: Reading, after: Reading, seed: int = 0) -> dict[str, Any]:
    """After minus before, paired by (image, caption index, question); interval clustered by image."""
    if before.keys() != after.keys():
        raise ValueError("before and after readings are not over the same (image, caption, question) keys")
    diffs = [a - b for a, b in zip(after.correct, before.correct, strict=True)]
    ci = cluster_bootstrap(diffs, before.image, seed=seed)
    return {"points": 100 * sum(diffs) / len(diffs), "ci95_points": None if ci is None else [100 * ci[0], 100 * ci[1]]}


_NUMBER = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|no)\b")


def mentions(captions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of captions that mention what the questions ask about: colours, shapes, counts, positions, text."""
    flat = [c.lower() for cs in captions for c in cs]
    if not flat:
        return {}

    def share(test: Callable[[str], bool]) -> float:
        return sum(map(test, flat)) / len(flat)

    return {
        "colour": share(lambda c: any(w in c for w in COLOUR_NAMES)),
        "shape": share(lambda c: any(w in c for w in SHAPES)),
        "count": share(lambda c: "objects in total" in c or bool(re.search(r"\bthere (is|are) \d", c))),
        "position": share(lambda c: any(w in c for w in CELL_NAMES)),
        "text": share(lambda c: "labelled" in c or "title" in c),
        "words": sum(len(c.split()) for c in flat) / len(flat),
    }


def summarise(reading: Reading, seed: int = 0) -> dict[str, Any]:
    ci = reading.ci95(seed)
    return {
        "m_acc": reading.m_acc(),
        "ci95": None if ci is None else list(ci),
        "questions": len(reading.correct),
        "by_kind": reading.by_kind(),
    }


def truth(ds: Dataset, captions: Sequence[Sequence[str]]) -> dict[str, Any]:
    """How true the captions are, checked sentence by sentence against each image's scene graph
    (``caprl.synth.truth``): precision by attribute, recall, hallucination rate, unread sentences.

    A captioner that learned to fool the reader would state more and be right less; one that learned to describe
    states more with the same precision.
    """
    from caprl.synth.truth import truth_summary

    return truth_summary([s.metadata["scene"] for s in ds.samples], captions)


def precision_change(
    ds: Dataset, before: Sequence[Sequence[str]], after: Sequence[Sequence[str]], *, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """Statement precision after minus before, in points, with a 95% interval from a bootstrap over images (both
    readings resampled together, each a ratio of true to stated statements)."""
    import numpy as np

    from caprl.synth.truth import check_caption

    per_image = []
    for s, b, a in zip(ds.samples, before, after, strict=True):
        row = []
        for caps in (b, a):
            checks = [check_caption(s.metadata["scene"], c) for c in caps]
            row += [sum(st.true for t in checks for st in t.statements), sum(len(t.statements) for t in checks)]
        per_image.append(row)
    m = np.asarray(per_image, dtype=np.float64)  # columns: true before, stated before, true after, stated after
    if m[:, 1].sum() == 0 or m[:, 3].sum() == 0:
        return {"points": None, "ci95_points": None}
    point = m[:, 2].sum() / m[:, 3].sum() - m[:, 0].sum() / m[:, 1].sum()
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(m), np.full(len(m), 1.0 / len(m)), size=n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = (w @ m[:, 2]) / (w @ m[:, 3]) - (w @ m[:, 0]) / (w @ m[:, 1])
    diffs = diffs[np.isfinite(diffs)]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {
        "points": round(100 * float(point), 1),
        "ci95_points": [round(100 * float(lo), 1), round(100 * float(hi), 1)],
    }
