"""Metric rules the harnesses share, written once, exactly as their code behaves (no stripping or normalising
beyond what it does): pix2struct's relaxed correctness and the Qwen-VL ANLS distance."""

from __future__ import annotations

from caprl.eval.metrics.anls import levenshtein
from caprl.eval.metrics.relaxed import to_float as _to_float


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """pix2struct's rule as the harnesses copy it: numeric prediction within 5% of a non-zero numeric target,
    else a case-insensitive string match. Nothing is stripped here (``float`` itself ignores surrounding
    whitespace, ``endswith("%")`` does not): callers strip what their harness strips."""
    prediction, target = str(prediction), str(target)
    p, t = _to_float(prediction), _to_float(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= max_relative_change
    return prediction.lower() == target.lower()


def anls_distance(gold: str, prediction: str) -> float:
    """Normalised edit distance as Qwen-VL's ANLS computes it (``anls_compute`` in VLMEvalKit and CapRL, inlined
    in lmms-eval's ``anls``): whitespace collapsed and lower-cased for the distance, the lengths of the strings as
    given (upper-cased) for the denominator."""
    g = " ".join(gold.strip().lower().split())
    p = " ".join(prediction.strip().lower().split())
    length = max(len(gold.upper()), len(prediction.upper()))
    return 0.0 if length == 0 else levenshtein(g, p) / length


def anls_score(golds: list[str], prediction: str, threshold: float = 0.5) -> float:
    """``1 - min distance`` over the golds, 0 below the threshold (lmms-eval's ``anls``, VLMEvalKit's
    ``hit_calculate`` for InfoVQA)."""
    best = 1.0 - min(anls_distance(g, prediction) for g in golds)
    return 0.0 if best < threshold else best
