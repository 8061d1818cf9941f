"""Helpers shared by the reward-service tests (no tests here): items, CapRL bodies, a reader that can be held, a
rule-based judge."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import numpy as np

from caprl.captioners.base import CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames
from caprl.readers.base import LetterQuery, LetterScores, Messages
from caprl.reward.engine import RewardItem
from caprl.synth import make_image_sample


def make_items(n: int, *, seed: int = 5, level: str = "terse") -> list[RewardItem]:
    out = []
    for i in range(n):
        sample, _ = make_image_sample(i, seed=seed)
        out.append(RewardItem(caption=sample.references[level], mcqs=sample.mcqs, id=sample.id))
    return out


def item_json(item: RewardItem) -> dict:
    return item.model_dump(mode="json", exclude_none=True)


def caprl_prompt(item: RewardItem, style: str = "{letter}) {text}") -> list:
    """The reference body for one item: [caption, [[question_with_options, gold_letter], ...]]."""
    return [item.caption, [[q.render(style), q.gold_letter] for q in item.mcqs]]


class HeldReader:
    """Wraps a reader: each call waits for ``gate`` (set by default), and fails on captions containing ``poison``."""

    def __init__(self, inner, *, poison: str | None = None):
        self.inner, self.poison = inner, poison
        self.name = f"held:{inner.name}"
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls = 0

    def _check(self, prompts: Sequence[Messages]) -> None:
        self.calls += 1
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        if self.poison and any(self.poison in m["content"] for p in prompts for m in p):
            raise ValueError("poisoned caption")

    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        self._check([q.messages for q in queries])
        return self.inner.score_letters(queries)

    def generate(self, prompts: Sequence[Messages], **kwargs) -> list[str]:
        self._check(prompts)
        return self.inner.generate(prompts, **kwargs)


NOJSON = "NOJSON"


class RuleJudgeCaptioner:
    """A deterministic judge double (implements the Captioner protocol): its scores follow from the media's pixels
    and the prompt; a caption holding ``NOJSON`` gets an answer with no JSON in it."""

    name = "rules:judge"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def caption(self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None):
        self.calls.append(len(requests))
        out = []
        for r in requests:
            if NOJSON in r.prompt:
                out.append(["I would rather describe the weather."])
                continue
            pixels = r.media.frames if isinstance(r.media, VideoFrames) else np.asarray(r.media)
            scores = {
                "factuality": int(pixels.astype(np.float64).mean()) % 11,
                "coverage": len(r.prompt) % 11,
                "hallucination": int(pixels[..., 0].std()) % 11,
            }
            if isinstance(r.media, VideoFrames):
                scores["temporal_alignment"] = (len(r.media) * 3) % 11
            out.append([f"```json\n{json.dumps(scores)}\n```"])
        return out
