"""ANLS (average normalised Levenshtein similarity), the InfographicVQA / DocVQA metric.

For a prediction and its gold answers (both lower-cased, whitespace runs collapsed, ends stripped):
``max over golds of (1 - NL if NL < tau else 0)`` with ``NL = edit distance / length of the longer string``.
It agrees with the ``anls`` package (tests compare them on random pairs).

>>> anls("Tiger", ["tiger"]), anls("tigers", ["tiger"]), anls("cat", ["tiger"])
(1.0, 0.8333333333333334, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

TAU = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def similarity(prediction: str, gold: str, tau: float = TAU) -> float:
    """``1 - NL`` when the normalised distance is below ``tau``, else 0 (inputs already normalised)."""
    longest = max(len(prediction), len(gold))
    nl = levenshtein(prediction, gold) / longest if longest else 0.0
    return 1.0 - nl if nl < tau else 0.0


def anls(prediction: str, golds: Sequence[str], tau: float = TAU) -> float:
    if not golds:
        raise ValueError("ANLS needs at least one gold answer")
    p = normalise(prediction)
    return max(similarity(p, normalise(g), tau) for g in golds)
