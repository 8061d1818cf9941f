"""Temporal grounding (TimeLens-Bench): IoU of the predicted [start, end] with the gold one; R1@m and mIoU.

R1@m is the share of questions whose first predicted span has IoU >= m with the gold span; mIoU their mean IoU.
An answer with no span scores IoU 0.

>>> iou((2.0, 6.0), (4.0, 8.0))
0.3333333333333333
"""

from __future__ import annotations

THRESHOLDS = (0.3, 0.5, 0.7)


def iou(pred: tuple[float, float], gold: tuple[float, float]) -> float:
    ps, pe = sorted(pred)
    gs, ge = sorted(gold)
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = max(pe, ge) - min(ps, gs)
    return inter / union if union > 0 else float(ps == gs and pe == ge)


def grounding_scores(pred: tuple[float, float] | None, gold: tuple[float, float]) -> dict[str, float]:
    """``{"miou": IoU, "r1@0.3": 0/1, "r1@0.5": 0/1, "r1@0.7": 0/1}`` for one answer."""
    value = 0.0 if pred is None else iou(pred, gold)
    return {"miou": value, **{f"r1@{m}": float(value >= m) for m in THRESHOLDS}}
