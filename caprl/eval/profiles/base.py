"""What a scoring profile is: per benchmark, how an answer is read out of the reader's output, how it is scored,
how scores are aggregated into the headline figure, and (for a profile that also fixes the reading) the reader
prompt and sampling.

A profile reproduces one harness (lmms-eval, VLMEvalKit, CapRL's own Prism script) exactly, quirks included, so
caprl's numbers can sit beside that harness's published tables. Each rule names the upstream file and commit it
reproduces; ``tests/test_eval_profiles.py`` checks it against scores computed by the upstream functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from caprl.errors import InputError
from caprl.eval.metrics.judge import JudgeSpec
from caprl.eval.types import EvalItem, ItemScore, stable_id
from caprl.reward.prompt import Messages

DEFAULT = "caprl"


class ProfileError(InputError):
    """A profile that does not exist, or does not cover a benchmark."""

    exit_code = 2


@dataclass(frozen=True)
class Reading:
    """How a profile asks the reader: its own prompt (caption and question in, chat messages out), free-text
    generation at ``temperature`` up to ``max_new_tokens``. Its ``key`` goes into the read records' id, so reads
    made this way never mix with reads made with caprl's prompts."""

    name: str
    messages: Callable[[str, EvalItem], Messages]
    temperature: float
    max_new_tokens: int
    wording: str
    """The prompt's fixed text (hashed into ``key``: a change of wording is a new cache key)."""

    @property
    def key(self) -> str:
        return f"{self.name}:{stable_id(self.wording, self.temperature, self.max_new_tokens)}"


Aggregate = Literal["mean", "group_mean", "answered"]
"""How per-question scores become the benchmark's figure (for the whole set and for each category alike):
``mean`` over questions; ``group_mean``, the mean of each group's mean (lmms-eval's MMStar: the groups are the L2
categories); ``answered``, correct over answered questions only (lmms-eval's MVBench: an empty output is left out
of the denominator), then the mean over groups (MVBench's tasks)."""


@dataclass(frozen=True)
class Scoring:
    """One benchmark under one profile.

    ``answer(raw, item, mode)`` is the prediction the metric sees (None: nothing could be read, scored 0);
    ``score(prediction, item)`` the metric values (``"score"`` first); ``judged`` decides which predictions go to
    the LLM judge instead, ``judge`` the prompt it is asked with and how its reply is read; ``judge_reply``
    re-reads a judge's raw reply when the profile reads verdicts its own way; ``judge_tag`` separates the
    profile's verdicts from caprl's when the judge is shown a different answer text.
    """

    profile: str
    benchmark: str
    answer: Callable[[str, EvalItem, str], str | None]
    score: Callable[[str | None, EvalItem], dict[str, float]]
    aggregate: Aggregate = "mean"
    group: Callable[[EvalItem], str | None] | None = None
    """The group a question averages in under ``group_mean`` / ``answered`` (None: its category)."""
    reading: Reading | None = None
    readable: Callable[[str | None], bool] | None = None
    """Whether an answer counts as parsed, when that is not "the prediction is not None" (caprl-paper scores every
    output, and counts those without its answer format as parse failures)."""
    judged: Callable[[str | None, EvalItem], bool] | None = None
    """Whether this prediction goes to the judge (its verdict is the score) rather than to ``score`` (None: when it
    is not None and the benchmark's metric judges the question). A None prediction is never judged."""
    judge: JudgeSpec | None = None
    """The profile's judge prompt and reading of its reply (None: the benchmark's own). Verdicts are stored under
    the prompt's ``prompt_sha``, so they never mix with verdicts given to another prompt."""
    judge_reply: Callable[[str], float | None] | None = None
    judge_tag: str | None = None
    source: str = ""
    """The upstream code reproduced: ``repo path@commit`` (several separated by ``; ``)."""

    def sends_to_judge(self, prediction: str | None, item: EvalItem, metric_judges: bool) -> bool:
        """Whether the score stage asks the judge about ``prediction`` (``metric_judges``: the benchmark's metric
        judges this question)."""
        if prediction is None:
            return False
        return self.judged(prediction, item) if self.judged is not None else metric_judges

    def parsed(self, prediction: str | None) -> bool:
        return self.readable(prediction) if self.readable is not None else prediction is not None

    def group_of(self, item: EvalItem) -> str | None:
        if self.group is not None:
            return self.group(item)
        return item.category if isinstance(item.category, str) else None


# ------------------------------------------------------------------------------------------------ aggregates


def _aggregate(values: Sequence[float], answered: Sequence[bool], groups: Sequence[str | None], how: Aggregate):
    if not values:
        return None
    if how == "mean":
        return float(np.mean(values))
    by_group: dict[str | None, list[tuple[float, bool]]] = defaultdict(list)
    for v, a, g in zip(values, answered, groups, strict=True):
        by_group[g].append((v, a))
    means = []
    for members in by_group.values():
        if how == "answered":
            kept = [v for v, a in members if a]
            # lmms-eval returns 0 for a task with nothing answered (mvbench_aggregate_results)
            means.append(float(np.mean(kept)) if kept else 0.0)
        else:
            means.append(float(np.mean([v for v, _ in members])))
    return float(np.mean(means))


def aggregate_figures(scores: Sequence[ItemScore], how: Aggregate) -> dict[str, Any]:
    """M_Acc, BoN and the no-caption figure of a set of questions under the profile's aggregate.

    M_Acc is the aggregate of each caption sample's scores, averaged over the k samples (for ``mean`` this is the
    plain M_Acc); BoN aggregates each question's best sample (answered when any sample was); no-caption
    aggregates the blind scores."""
    if not scores:
        return {"m_acc": None, "bon": None, "no_caption_acc": None}
    groups = [s.group for s in scores]
    k = len(scores[0].scores)
    per_sample = [
        _aggregate([s.scores[j] for s in scores], [s.parsed[j] for s in scores], groups, how) for j in range(k)
    ]
    bon = _aggregate([max(s.scores) for s in scores], [any(s.parsed) for s in scores], groups, how)
    blind = [s for s in scores if s.blind is not None]
    no_caption = None
    if blind:
        no_caption = _aggregate(
            [float(s.blind or 0.0) for s in blind],
            [s.blind_parsed is not False for s in blind],
            [s.group for s in blind],
            how,
        )
    return {"m_acc": float(np.mean(per_sample)), "bon": bon, "no_caption_acc": no_caption}


def aggregate_bootstrap(
    scores: Sequence[ItemScore], how: Aggregate, *, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile interval of the profile's M_Acc under a bootstrap over media (questions about one medium stay
    together, as in ``caprl.eval.stats``)."""
    if len(scores) < 2:
        return None
    by_media: dict[str, list[ItemScore]] = defaultdict(list)
    for s in scores:
        by_media[s.media_id].append(s)
    clusters = list(by_media.values())
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(clusters), size=len(clusters))
        sample = [s for i in drawn for s in clusters[i]]
        value = aggregate_figures(sample, how)["m_acc"]
        if value is not None:
            stats.append(value)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)
