"""Multiple-choice accuracy: the chosen letter equals the gold letter. An answer that names no option (``None``)
is wrong and counted as a parse failure by the caller, never replaced by a guess."""

from __future__ import annotations


def mcq_accuracy(chosen: str | None, gold: str) -> float:
    return float(chosen is not None and chosen == gold)
