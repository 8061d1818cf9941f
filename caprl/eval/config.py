"""The settings of one Prism run, and the keys they give the records on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from caprl.eval.types import stable_id
from caprl.schema import FrameSampling

Stage = Literal["caption", "read", "score", "all"]
T = TypeVar("T")

EXTERNAL = "external"
"""The prompt/frames/settings key of captions read from a file: nothing about how they were made is known."""


class PrismConfig(BaseModel):
    """What to evaluate and how. ``captioner``/``reader`` are the *names* the records are keyed by (a model path,
    URL or a name of your choosing); the models themselves are only loaded when a stage has work for them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    benchmarks: list[str]
    out: Path
    """Output folder: records per benchmark, report.json, report.md, report.html."""
    captioner: str
    reader: str | None = None
    stage: Stage = "all"
    """One stage, or all in order."""
    k: int = Field(default=4, ge=1)
    """Captions per medium (M_Acc averages them, BoN takes the best); 4, or with captions what the file holds.
    Prism/CapRL: 4 samples at temperature 1."""
    temperature: float = Field(default=1.0, ge=0)
    """Captioning temperature (Prism/CapRL: 1.0)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Captioning top-p."""
    max_new_tokens: int = Field(default=2048, ge=1)
    """Longest caption in tokens."""
    seed: int = 0
    """Seed for caption sampling and the bootstrap."""
    caption_prompt: str | None = None
    """Caption prompt for every benchmark (default: each one's)."""
    question_aware: bool = False
    """Caption each question's medium with the question in the prompt (one caption set per question)."""
    frames: int | None = Field(default=None, ge=1)
    """Frames per video shown to the captioner, evenly spaced (default: each benchmark's, 128)."""
    read_mode: Literal["score", "generate"] = "score"
    """MCQs: ``score`` reads letter probabilities in one forward pass; ``generate`` parses free text."""
    read_max_new_tokens: int = Field(default=32, ge=1)
    """Longest generated answer in tokens."""
    baseline: bool = True
    """Also ask every question with no caption (the reader's blind accuracy)."""
    limit: int | None = Field(default=None, ge=1)
    """Only the first N questions of each benchmark (smoke runs)."""
    caption_batch: int = Field(default=8, ge=1)
    """Media per captioner call."""
    read_batch: int = Field(default=64, ge=1)
    """Questions per reader call."""
    compare: str | None = None
    """Another captioner (by name) to compare with on the same items, from records in the same ``out``."""
    bootstrap: int = Field(default=2000, ge=100)
    """Bootstrap resamples for the 95% intervals."""
    judge_max_new_tokens: int = Field(default=64, ge=1)
    """Longest answer of the judge of open-ended benchmarks (MMVU, MMBench-Video)."""
    captions: Path | None = None
    """Score captions written elsewhere instead of captioning: a jsonl/json/parquet file of rows with 'caption' (or
    'captions': a list) and a key (question_id, or media_id/image/video/path, or id). No captioner is loaded; the
    records are named ``captioner`` (the command's --captioner-name, default file:<the file's path>). ``k``
    defaults to the captions per medium the file holds."""
    html_items: int = Field(default=24, ge=0)
    """Questions per benchmark shown in ``report.html`` (a stable sample)."""
    profile: str = "caprl"
    """Scoring profile (``caprl.eval.profiles``): ``caprl`` (default), ``lmms-eval``, ``vlmevalkit`` or
    ``caprl-paper`` (which also sets the reader prompt and sampling, so its reads are separate records)."""

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        from caprl.eval.profiles import ProfileError, check_profile

        try:
            return check_profile(value)
        except ProfileError as exc:  # a ValueError, so pydantic (and the CLI) name the field
            raise ValueError(str(exc)) from None

    def sampling(self) -> FrameSampling | None:
        return None if self.frames is None else FrameSampling(num_frames=self.frames, max_frames=self.frames)

    def settings_key(self) -> str:
        return f"t={self.temperature:g};p={self.top_p:g};max={self.max_new_tokens};seed={self.seed}"

    def bench_dir(self, benchmark: str) -> Path:
        return self.out / benchmark

    def read_config(self, mcq_instruction: str, open_instruction: str) -> str:
        """Everything about the reading that changes an answer except the reader itself."""
        return f"{self.read_mode}:{stable_id(mcq_instruction, open_instruction, self.read_max_new_tokens)}"


class Lazy:
    """A model given as an instance or as a zero-argument factory, built on first use (so a stage with nothing to
    do never loads it)."""

    def __init__(self, value: object | Callable[[], object] | None, what: str):
        self._value, self._what, self._built = value, what, False

    def get(self) -> object:
        if self._value is None:
            raise ValueError(f"this stage needs a {self._what}, and none was given")
        if not self._built and callable(self._value) and not hasattr(self._value, "name"):
            self._value = self._value()
        self._built = True
        return self._value

    @property
    def given(self) -> bool:
        return self._value is not None
