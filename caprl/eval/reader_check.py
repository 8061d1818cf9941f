"""Does a reader read? Its accuracy on shapes-world questions from reference captions of falling detail.

Every question of ``n_items`` held-out shapes-world items (images and videos; stream ``reader-check``, never
a ``caprl synth`` dataset) is asked from each reference caption level — ``exhaustive`` (holds every answer),
``detailed``, ``brief``, ``terse`` (one sentence) and ``empty`` — through the reward's own path (the
``RewardEngine``: shuffled options, the "cannot be answered" option, the reader's chat template). Per level: argmax
accuracy and soft score (probability of gold) with 95% bootstrap intervals clustered by item, chance (one over
the options shown), and questions per second. A reader *reads* when exhaustive captions beat terse ones by a
margin whose interval stays above zero; a reader that does not gives rewards that do not depend on what a caption
says. Empty captions are no test: a good reader picks "cannot be answered" for them.

>>> report = check_reader(load_reader("qwen2.5-coder-1.5b-instruct"), n_items=30)   # doctest: +SKIP
>>> report.verdict.reads, report.levels["exhaustive"].accuracy                        # doctest: +SKIP
(True, 0.74)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from caprl.eval.stats import cluster_bootstrap
from caprl.readers.base import Reader
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem
from caprl.synth.items import EMPTY, SceneItem, scene_item

STREAM = "reader-check"
LEVELS: tuple[str, ...] = ("exhaustive", "detailed", "brief", "terse", EMPTY)
READS_MARGIN = 0.10
"""Exhaustive must beat terse by at least this much accuracy (lower end of the paired 95% interval > 0 too)."""


@dataclass
class LevelResult:
    questions: int
    accuracy: float
    accuracy_ci95: tuple[float, float] | None
    soft: float
    soft_ci95: tuple[float, float] | None
    chance: float
    seconds: float
    questions_per_s: float
    by_kind: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdict:
    reads: bool
    gap: float | None
    """Accuracy of exhaustive minus terse captions (paired by question)."""
    gap_ci95: tuple[float, float] | None
    text: str


@dataclass
class ReaderCheckReport:
    reader: str
    n_items: int
    seed: int
    levels: dict[str, LevelResult]
    verdict: Verdict
    wall_s: float
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_items(n_items: int, seed: int = 0) -> list[SceneItem]:
    return [scene_item(STREAM, seed, i) for i in range(n_items)]


def check_reader(
    reader: Reader,
    *,
    n_items: int = 30,
    seed: int = 0,
    levels: Sequence[str] = LEVELS,
    config: RewardConfig | None = None,
    on_level: Callable[[str, int, int], None] | None = None,
) -> ReaderCheckReport:
    """Score ``reader`` on ``n_items`` held-out items at each caption level; see the module docstring.

    ``config`` is the reward configuration to check under (default: caprl's, in ``soft`` mode so that each answer
    gives both its argmax letter and the probability of gold). ``on_level(level, done, total)`` reports progress.
    """
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown caption levels {unknown}; choose from {', '.join(LEVELS)}")
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    config = (config or RewardConfig()).model_copy(update={"mode": "soft", "n_questions": None, "seed": seed})
    engine = RewardEngine(reader, config)
    items = check_items(n_items, seed)
    start = time.perf_counter()
    results: dict[str, LevelResult] = {}
    correct: dict[str, list[float]] = {}
    clusters = [it.id for it in items for _ in it.mcqs]
    for k, level in enumerate(levels):
        if on_level:
            on_level(level, k, len(levels))
        batch = [
            RewardItem(caption=it.captions[level], mcqs=list(it.mcqs), modality=it.modality, id=it.id) for it in items
        ]
        t0 = time.perf_counter()
        scored = engine.score(batch)
        seconds = time.perf_counter() - t0
        questions = [q for r in scored for q in r.questions]
        hits = [float(q.chosen == q.gold) for q in questions]
        soft = [q.score for q in questions]
        kinds: dict[str, list[float]] = {}
        for it, r in zip(items, scored, strict=True):
            for q in r.questions:
                kinds.setdefault(it.mcqs[q.mcq_index].kind or "other", []).append(float(q.chosen == q.gold))
        correct[level] = hits
        results[level] = LevelResult(
            questions=len(questions),
            accuracy=sum(hits) / len(hits),
            accuracy_ci95=cluster_bootstrap(hits, clusters, seed=seed),
            soft=sum(soft) / len(soft),
            soft_ci95=cluster_bootstrap(soft, clusters, seed=seed),
            chance=sum(1.0 / len(q.order) for q in questions) / len(questions),
            seconds=round(seconds, 2),
            questions_per_s=len(questions) / seconds if seconds > 0 else float("inf"),
            by_kind={kind: sum(v) / len(v) for kind, v in sorted(kinds.items())},
        )
    if on_level:
        on_level("", len(levels), len(levels))
    return ReaderCheckReport(
        reader=getattr(reader, "name", type(reader).__name__),
        n_items=n_items,
        seed=seed,
        levels=results,
        verdict=verdict(results, correct, clusters, seed=seed),
        wall_s=round(time.perf_counter() - start, 1),
        config=config.model_dump(),
    )


def verdict(
    results: dict[str, LevelResult], correct: dict[str, list[float]], clusters: Sequence[str], *, seed: int = 0
) -> Verdict:
    """``reads`` when exhaustive beats terse by >= READS_MARGIN and the paired 95% interval of the gap is above 0."""
    if "exhaustive" not in results or "terse" not in results:
        return Verdict(False, None, None, "no verdict: the check needs the exhaustive and terse levels")
    diffs = [a - b for a, b in zip(correct["exhaustive"], correct["terse"], strict=True)]
    gap = sum(diffs) / len(diffs)
    ci = cluster_bootstrap(diffs, clusters, seed=seed)
    full = results["exhaustive"]
    points = f"{100 * gap:+.1f} points"
    interval = f" (95% CI {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})" if ci else ""
    reads = gap >= READS_MARGIN and ci is not None and ci[0] > 0
    if reads:
        text = (
            f"reads: exhaustive captions {points} over terse ones{interval}; accuracy {full.accuracy:.2f} from "
            f"exhaustive captions (chance {full.chance:.2f}). Rewards from this reader rank captions by content."
        )
    else:
        text = (
            f"does not read: exhaustive captions {points} over terse ones{interval}, accuracy {full.accuracy:.2f} "
            f"(chance {full.chance:.2f}). Rewards from this reader barely depend on what a caption says."
        )
    return Verdict(reads, gap, ci, text)
