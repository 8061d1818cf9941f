"""What crosses the eval stages' boundaries: benchmark items in memory, and the records each stage appends to disk.

Records are pydantic models written one per jsonl line. Each carries a stable id (a hash of its key fields), so a
re-run can tell what is done without comparing whole records.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from caprl.schema import LETTERS, MCQ, Media


def stable_id(*parts: object) -> str:
    """A short stable hash of ``parts`` (joined with a separator no field contains in practice)."""
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=10).hexdigest()


def category_list(category: str | list[str] | None) -> list[str]:
    """The categories a question counts in (none: ``[]``)."""
    if category is None:
        return []
    return [category] if isinstance(category, str) else list(category)


class EvalItem(BaseModel):
    """One benchmark question and the media it is about.

    ``media_id`` names the image or video: questions about one medium share its captions, and the bootstrap
    resamples media, not questions. Exactly one kind of gold is set: ``gold`` (index into ``options``) for a
    multiple-choice question, ``answers`` for an open one (any of them is right), ``span`` for temporal grounding.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    media_id: str
    media: Media
    question: str
    options: list[str] | None = None
    gold: int | None = None
    answers: list[str] = Field(default_factory=list)
    span: tuple[float, float] | None = None
    category: str | list[str] | None = None
    """Where the report counts the question; a list counts it in each (MMBench-Video's dimensions)."""
    media_name: str | None = None
    """The medium's name in the release (a file name or relative path) when known: captions made elsewhere may be
    keyed by it, and the HTML report shows it."""
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_mcq(self) -> bool:
        return self.options is not None

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options or [])]

    @property
    def gold_letter(self) -> str | None:
        return None if self.gold is None else LETTERS[self.gold]

    def mcq(self) -> MCQ:
        if self.options is None or self.gold is None:
            raise ValueError(f"item {self.id!r} is not a multiple-choice question")
        return MCQ(question=self.question, options=self.options, gold=self.gold)


class CaptionRecord(BaseModel):
    """One caption (sample ``sample_index`` of ``k``) of one caption unit (a medium, or a question when captions
    are question-aware), keyed by everything that changes the caption."""

    model_config = ConfigDict(extra="forbid")

    caption_id: str
    benchmark: str
    unit_id: str
    captioner: str
    prompt: str
    frames: str
    settings: str
    sample_index: int
    caption: str | None
    error: str | None = None
    seconds: float | None = None


class ReadRecord(BaseModel):
    """The reader's answer to one question from one caption (``caption_id`` ``"blind"``: no caption at all)."""

    model_config = ConfigDict(extra="forbid")

    read_id: str
    benchmark: str
    question_id: str
    caption_id: str
    captioner: str
    sample_index: int
    reader: str
    read_config: str
    mode: Literal["score", "generate"]
    output: str
    """The raw answer: the generated text, or the argmax letter in score mode."""
    probs: dict[str, float] | None = None
    letter_mass: float | None = None


class JudgeRecord(BaseModel):
    """An LLM judge's verdict on one read, with its raw output (kept so a verdict can be audited)."""

    model_config = ConfigDict(extra="forbid")

    judge_id: str
    read_id: str
    judge: str
    prompt_sha: str
    raw: str
    score: float | None
    """The parsed score on the benchmark's scale; None when the judge's output could not be parsed."""


class ItemScore(BaseModel):
    """One question's scores from each of its k captions, and from no caption (written by the score stage)."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    question_id: str
    media_id: str
    category: str | list[str] | None
    scores: list[float]
    """Primary metric per caption sample (failed captions and unparseable answers score 0)."""
    parsed: list[bool]
    caption_errors: int = 0
    blind: float | None = None
    extras: dict[str, list[float]] = Field(default_factory=dict)
    """Secondary metrics per caption sample (e.g. TimeLens R1@0.5)."""
    group: str | None = None
    """The group a scoring profile's aggregate averages over (lmms-eval's MMStar: the L2 category)."""
    blind_parsed: bool | None = None
    """Whether an answer could be read from the no-caption output (None: no baseline)."""
