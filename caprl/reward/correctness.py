"""The correctness term (CCCaption-style): the share of a caption's statements that a verifier confirms.

CapRL's QA reward pays for coverage: a wrong answer and a "cannot be answered" answer both score 0, so a caption
that guesses loses nothing by it. CCCaption (CVPR 2026) pairs that completeness reward with a correctness reward:
the caption split into atomic claims, each verified. Two verifiers:

- the scene graph of the shapes world, where captions are written in the generator's sentences and every sentence
  is one atomic statement (``caprl.synth.truth``): the term is true statements / (read statements + unread
  sentences), so a sentence the checker cannot read earns nothing;
- for real media, ``caprl.reward.claims.ClaimVerifier``: the reader splits the caption into atomic claims and a VLM
  judge checks each against the media; the term is confirmed claims / claims.

Either way a caption that states nothing scores 0 (it has verified nothing), and a verification that failed is an
error for its item, never a 0.0. Items that carry a ``scene`` use the scene graph; the others need a ``Verifier``
on the engine (``RewardEngine(..., verifier=...)``) and their media.

>>> item = RewardItem(caption="There is 1 object in total. There in.", mcqs=mcqs, scene=scene)  # doctest: +SKIP
>>> scene_verification(item)                                                          # doctest: +SKIP
Verification(correctness=0.5, claims=None, refuted=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from caprl.reward.engine import RewardItem

NO_SCENE = (
    "the correctness term needs a verifier: items must carry their shapes-world 'scene' (Sample.metadata['scene']), "
    "or their media for a claim verifier (caprl.reward.claims: the reader splits the caption into claims, a VLM judge "
    "checks them); with neither, set correctness_weight to 0"
)


class ClaimVerdict(BaseModel):
    """One atomic claim of a caption and whether the verifier confirmed it."""

    claim: str
    true: bool


@dataclass(frozen=True)
class Verification:
    """A verifier's answer for one caption: the share confirmed (in [0, 1]), how many of its statements or claims
    were not confirmed (false, or unreadable), and, where there are claims, each one's verdict."""

    correctness: float
    claims: list[ClaimVerdict] | None = None
    refuted: int | None = None

    @property
    def not_confirmed(self) -> int:
        if self.refuted is not None:
            return self.refuted
        return sum(not c.true for c in self.claims or [])


class VerificationError(ValueError):
    """A caption the verifier could not verify (no readable claims, no readable verdicts after its retries, ...);
    ``raw`` keeps the models' answers, so the error can show them."""

    def __init__(self, message: str, *, raw: Sequence[str] = ()):
        super().__init__(message)
        self.raw = list(raw)


class Verifier(Protocol):
    """What ``RewardEngine(verifier=...)`` takes: per item (in order), its ``Verification`` or the exception that
    kept it from one (returned, not raised, so one caption's failure costs only its own reward)."""

    def verify(self, items: Sequence[RewardItem]) -> list[Verification | Exception]: ...


def scene_verification(item: RewardItem) -> Verification:
    """The shapes-world verdict: true statements over everything the caption says (statements read plus sentences
    unread; 0 for nothing), and how many of those are false or unread."""
    from caprl.synth.truth import check_caption

    if item.scene is None:
        raise ValueError(f"item {item.id!r}: {NO_SCENE}")
    truth = check_caption(item.scene, item.caption)
    said = len(truth.statements) + len(truth.unread)
    true = sum(s.true for s in truth.statements)
    return Verification(true / said if said else 0.0, refuted=said - true)
