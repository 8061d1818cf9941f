"""LLM-judge scoring (MMVU open-ended questions, MMBench-Video) through any OpenAI-compatible chat endpoint.

The judge sees the question, the reference answer and the reader's answer, and replies with a score. Its raw
reply is stored next to the parsed score (``JudgeRecord``), so every verdict can be audited. With no judge
configured, scoring a benchmark that needs one raises ``JudgeNotConfigured``: there is no fallback to exact match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from caprl.errors import CaprlError
from caprl.eval.types import stable_id

JUDGE_URL_ENV = "CAPRL_JUDGE_URL"
JUDGE_MODEL_ENV = "CAPRL_JUDGE_MODEL"
JUDGE_KEY_ENV = "CAPRL_JUDGE_API_KEY"


class JudgeNotConfigured(CaprlError, RuntimeError):
    """A benchmark needs an LLM judge and none was given."""


class JudgeModel(Protocol):
    """What a judge is: anything that turns chat prompts into texts (every caprl reader backend qualifies)."""

    name: str

    def generate(
        self, prompts: Sequence[list[dict[str, Any]]], *, max_new_tokens: int = ..., temperature: float = ...
    ): ...


@dataclass(frozen=True)
class JudgeSpec:
    """A judging rubric: the prompt, the score range and how a reply is read."""

    name: str
    instruction: str
    max_score: int

    @property
    def prompt_sha(self) -> str:
        return stable_id(self.name, self.instruction, self.max_score)

    def messages(self, question: str, reference: str, answer: str) -> list[dict[str, str]]:
        body = f"Question: {question}\nReference answer: {reference}\nCandidate answer: {answer}"
        return [{"role": "system", "content": self.instruction}, {"role": "user", "content": body}]

    def parse(self, reply: str) -> float | None:
        """The score in the reply: the last ``Score: N`` (any case), else a reply that is just a number."""
        found = re.findall(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", reply, flags=re.I)
        if not found:
            bare = reply.strip().strip("*.").strip()
            found = [bare] if re.fullmatch(r"\d+(?:\.\d+)?", bare) else []
        if not found:
            return None
        value = float(found[-1])
        return value if 0 <= value <= self.max_score else None


CORRECTNESS = JudgeSpec(
    name="correctness-0-1",
    instruction=(
        "You grade answers to questions about a video. Compare the candidate answer with the reference answer. "
        "The candidate is correct when it states the same answer as the reference (wording, units and formatting "
        "may differ; an answer that hedges between several options is not correct). Reply with exactly one line: "
        "'Score: 1' if the candidate is correct, 'Score: 0' if it is not."
    ),
    max_score=1,
)

QUALITY_0_3 = JudgeSpec(
    name="quality-0-3",
    instruction=(
        "You grade answers to questions about a video against a reference answer, on a scale of 0 to 3: "
        "3 = fully correct and complete; 2 = mostly correct with minor omissions or inaccuracies; "
        "1 = partly correct but with major errors or omissions; 0 = wrong, irrelevant or empty. "
        "Reply with exactly one line: 'Score: N' with N in 0, 1, 2, 3."
    ),
    max_score=3,
)


def not_configured_message(benchmark: str, n: int) -> str:
    return (
        f"benchmark {benchmark!r}: {n} answer(s) need an LLM judge and no judge is configured. Pass --judge URL "
        f"(any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1) and --judge-model NAME, or set "
        f"${JUDGE_URL_ENV} / ${JUDGE_MODEL_ENV} (${JUDGE_KEY_ENV} for a key). caprl does not fall back to exact "
        f"match: scores judged otherwise would not be comparable."
    )


def load_judge(url: str | None = None, model: str | None = None, **kwargs: Any) -> JudgeModel | None:
    """The judge at ``url`` (or ``$CAPRL_JUDGE_URL``), or None when neither is set."""
    url = url or os.environ.get(JUDGE_URL_ENV)
    if not url:
        return None
    from caprl.readers.openai import OpenAIReader

    model = model or os.environ.get(JUDGE_MODEL_ENV)
    key = kwargs.pop("api_key", None) or os.environ.get(JUDGE_KEY_ENV)
    return OpenAIReader(url, model, api_key=key, mode="chat", **kwargs)
