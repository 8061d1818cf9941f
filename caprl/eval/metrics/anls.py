"""ANLS (average normalised Levenshtein similarity), in the two variants the benchmarks' official code uses.

Both lower-case the answers, collapse whitespace runs and strip the ends, then take the edit distance ``d`` between
prediction and gold. They differ at the threshold and in the length ``d`` is divided by:

- ``anls`` (InfographicVQA, as lmms-eval and VLMEvalKit score it, after Qwen-VL's script): ``NL = d / max(len(gold),
  len(prediction))`` with the lengths of the strings *as given* (before normalisation), ``score = 1 - min over golds
  of NL``, and 0 when that is below ``tau`` — so ``NL == 0.5`` exactly keeps 0.5 (``"ac"`` vs ``"ab"``).
- ``anls_package`` (the ``anls`` package, which ChartQAPro's released script calls): ``NL = d / max`` of the
  *normalised* lengths, per gold ``1 - NL`` when ``NL < tau`` else 0, the best gold. ``NL == 0.5`` scores 0.

>>> anls("ac", ["ab"]), anls_package("ac", ["ab"])
(0.5, 0.0)
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


def _nl(distance: int, a: str, b: str) -> float:
    # Lengths of the upper-cased strings, as the official code takes them (they differ from len() for a few
    # characters, e.g. "ß" -> "SS").
    longest = max(len(a.upper()), len(b.upper()))
    return distance / longest if longest else 0.0


def anls(prediction: str, golds: Sequence[str], tau: float = TAU) -> float:
    """InfographicVQA's ANLS as lmms-eval and VLMEvalKit compute it (see the module docstring)."""
    if not golds:
        raise ValueError("ANLS needs at least one gold answer")
    p = normalise(prediction)
    best = 1.0 - min(_nl(levenshtein(normalise(g), p), g, prediction) for g in golds)
    return 0.0 if best < tau else best


def anls_package(prediction: str, golds: Sequence[str], tau: float = TAU) -> float:
    """ANLS as the ``anls`` package (``anls_score``) computes it (see the module docstring)."""
    if not golds:
        raise ValueError("ANLS needs at least one gold answer")
    p = normalise(prediction)
    scores = []
    for gold in golds:
        g = normalise(gold)
        nl = _nl(levenshtein(p, g), p, g)
        scores.append(1.0 - nl if nl < tau else 0.0)
    return max(scores)
