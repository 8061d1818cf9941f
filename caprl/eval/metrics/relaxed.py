"""ChartQA's relaxed accuracy, as the benchmark's authors (and lmms-eval / VLMEvalKit) compute it.

A numeric prediction is right when within 5% of a numeric gold (relative to the gold); anything else needs a
case-insensitive exact match. A trailing ``%`` divides by 100 on either side, so ``"45%"`` matches ``"0.45"`` but
not ``"45"`` — the official rule, kept so numbers compare with published ones. A gold of 0 falls back to exact
match (a relative error is undefined). Thousands separators are not numbers here (``"1,000"`` matches only
``"1,000"``), again as in the official code.

>>> relaxed_correct("10.4", "10"), relaxed_correct("11", "10"), relaxed_correct("Yes", "yes")
(True, False, True)
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_RELATIVE_CHANGE = 0.05


def to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correct(prediction: str, target: str, max_relative_change: float = MAX_RELATIVE_CHANGE) -> bool:
    prediction, target = prediction.strip(), target.strip()
    p, t = to_float(prediction), to_float(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_accuracy(prediction: str, targets: Sequence[str]) -> float:
    """1.0 when the prediction is relaxed-correct for any of the gold answers."""
    return float(any(relaxed_correct(prediction, t) for t in targets))
