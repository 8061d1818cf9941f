"""The CapRL reward as a TRL reward function: captions in, reader accuracy (plus optional terms) out.

Scoring happens in process (:class:`EngineScorer`, a ``RewardEngine`` on a local reader) or through the reward
service (:class:`ServiceScorer`, one bulk request per batch, retried on restarts and overload). Either way a
reward that could not be computed raises and stops the step: TRL would otherwise turn a missing reward into a
made-up one. The time spent waiting, the reward parts and a few sample captions go to :class:`StepStats`, which
the metrics callback writes out once per optimizer step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from caprl.errors import ConfigError
from caprl.reward.engine import RewardEngine, RewardItem, RewardResult
from caprl.train.config import RewardSettings
from caprl.train.data import TrainData


class Scorer(Protocol):
    def score(self, items: Sequence[RewardItem]) -> list[RewardResult]: ...

    def close(self) -> None: ...


class EngineScorer:
    """Scores with a ``RewardEngine`` in this process."""

    def __init__(self, engine: RewardEngine):
        self.engine = engine

    def score(self, items: Sequence[RewardItem]) -> list[RewardResult]:
        return self.engine.score(items)

    def close(self) -> None:
        pass


class ServiceScorer:
    """Scores through one or more reward services; the run's reward options go with every request."""

    def __init__(
        self,
        urls: Sequence[str],
        options: dict[str, Any],
        *,
        api_key: str | None = None,
        timeout=300.0,
        send_media: bool = False,
    ):
        from caprl.server import RewardClient

        self.client = RewardClient(list(urls), api_key=api_key, timeout=timeout)
        self.options = options
        self.send_media = send_media

    def score(self, items: Sequence[RewardItem]) -> list[RewardResult]:
        payload: Sequence[Any] = items
        if self.send_media:
            payload = [_with_media(it) for it in items]
        return self.client.score(payload, options=self.options, include_questions=False)

    def close(self) -> None:
        self.client.close()


def _with_media(item: RewardItem) -> dict[str, Any]:
    """The item's JSON with its media path in the service's form (``media`` itself is not serialised)."""
    body = item.model_dump(mode="json", exclude_none=True)
    if item.media is None:
        raise ValueError(f"item {item.id!r}: reward.send_media is on but the item has no media path")
    body["media"] = {"type": item.modality, "path": str(item.media)}
    return body


def make_scorer(settings: RewardSettings) -> Scorer:
    """The scorer a run's ``reward`` section asks for."""
    if settings.service is not None:
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if settings.api_key_env and not key:
            raise ConfigError(f"reward.api_key_env: the environment variable {settings.api_key_env} is not set")
        return ServiceScorer(
            settings.urls(), settings.options(), api_key=key, timeout=settings.timeout_s, send_media=settings.send_media
        )
    from caprl.readers import load_reader

    assert settings.reader is not None  # RewardSettings guarantees one source
    return EngineScorer(RewardEngine(load_reader(settings.reader), settings.reward_config()))


@dataclass
class StepStats:
    """What the reward function saw since the last optimizer step (several generation batches add up)."""

    rewards: list[float] = field(default_factory=list)
    qa: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    length: list[float] = field(default_factory=list)
    timestamp: list[float] = field(default_factory=list)
    correctness: list[float] = field(default_factory=list)
    scenes: list[dict[str, Any]] = field(default_factory=list)
    """Shapes-world scene graphs of the captions in ``truth_captions``, for the truth figures."""
    truth_captions: list[str] = field(default_factory=list)
    caption_tokens: list[int] = field(default_factory=list)
    parse_failures: int = 0
    reward_wait_s: float = 0.0
    sample_ids: list[str] = field(default_factory=list)
    captions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rewards


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _std(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5


def truth_fields(stats: StepStats) -> dict[str, Any]:
    """How true this step's captions were (shapes world only: ``caprl.synth.truth``), so a run's curves show
    precision and hallucination beside the reward; empty when the items carry no scene graph."""
    if not stats.scenes:
        return {}
    from caprl.synth.truth import truth_summary

    t = truth_summary(stats.scenes, [[c] for c in stats.truth_captions])
    return {
        "truth_precision": t["precision"],
        "truth_recall": t["recall"],
        "truth_hallucination_rate": t["hallucination_rate"],
        "truth_statements_per_caption": t["statements_per_caption"],
        "truth_unread_share": t["unread_share"],
    }


def summarize(stats: StepStats) -> dict[str, Any]:
    """The reward fields of a ``metrics.jsonl`` record."""
    return {
        **truth_fields(stats),
        "reward_mean": _mean(stats.rewards),
        "reward_std": _std(stats.rewards),
        "reward_qa": _mean(stats.qa),
        "reward_accuracy": _mean(stats.accuracy),
        "reward_length": _mean(stats.length),
        "reward_timestamp": _mean(stats.timestamp),
        "reward_correctness": _mean(stats.correctness),
        "caption_tokens_mean": _mean(stats.caption_tokens),
        "parse_failures": stats.parse_failures,
        "reward_wait_s": round(stats.reward_wait_s, 4),
        "n_captions": len(stats.rewards),
    }


def completion_text(completion: Any) -> str:
    """The caption in a TRL completion (a string, or a list of chat messages ending with the assistant's)."""
    if isinstance(completion, str):
        return completion.strip()
    return str(completion[-1]["content"]).strip()


class CaptionReward:
    """The TRL reward function. TRL passes every dataset column as a keyword: ``sample_id`` finds the MCQs."""

    __name__ = "caprl"

    def __init__(self, data: TrainData, scorer: Scorer, *, sample_captions: int = 4, send_media: bool = False):
        self.data, self.scorer, self.sample_captions = data, scorer, sample_captions
        self.send_media = send_media
        self.stats = StepStats()

    def take_stats(self) -> StepStats:
        stats, self.stats = self.stats, StepStats()
        return stats

    def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]],
        sample_id: list[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float]:
        captions = [completion_text(c) for c in completions]
        items = [
            RewardItem(
                caption=cap,
                mcqs=self.data.items[sid].mcqs,
                modality=self.data.items[sid].modality,
                id=sid,
                caption_tokens=len(ids),
                scene=self.data.items[sid].sample.metadata.get("scene"),
                media=self.data.media_path(sid) if self.send_media else None,
            )
            for cap, sid, ids in zip(captions, sample_id, completion_ids, strict=True)
        ]
        t0 = time.perf_counter()
        results = self.scorer.score(items)
        wait = time.perf_counter() - t0
        if len(results) != len(items):
            raise RuntimeError(f"the reward scorer returned {len(results)} results for {len(items)} captions")
        s = self.stats
        s.reward_wait_s += wait
        s.rewards += [r.reward for r in results]
        s.qa += [r.qa for r in results]
        s.accuracy += [r.accuracy for r in results]
        s.length += [r.length for r in results if r.length is not None]
        s.timestamp += [r.timestamp for r in results if r.timestamp is not None]
        s.correctness += [r.correctness for r in results if r.correctness is not None]
        for item in items:
            if item.scene is not None:
                s.scenes.append(item.scene)
                s.truth_captions.append(item.caption)
        s.caption_tokens += [len(ids) for ids in completion_ids]
        s.parse_failures += sum(r.parse_failures for r in results)
        s.sample_ids += list(dict.fromkeys(sample_id))  # one entry per prompt, in batch order
        # One caption from each of the first prompts: different items say more than one item's group.
        firsts = list(dict.fromkeys(sample_id))[: self.sample_captions]
        for sid in firsts:
            i = sample_id.index(sid)
            s.captions.append({"id": sid, "caption": captions[i], "reward": results[i].reward})
        if log_metric is not None:
            log_metric("caprl/reward_wait_s", wait)
            log_metric("caprl/qa", _mean([r.qa for r in results]) or 0.0)
            log_metric("caprl/accuracy", _mean([r.accuracy for r in results]) or 0.0)
            log_metric("caprl/parse_failures", float(sum(r.parse_failures for r in results)))
        return [r.reward for r in results]
