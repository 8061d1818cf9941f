"""Temporal grounding (TimeLens-Bench): IoU of the predicted [start, end] with the gold one; R1@m and mIoU.

IoU is TimeLens's official formula: ``max(min(ends) - max(starts), 0) / (max(ends) - min(starts))``, the spans
taken as given, so a reversed prediction (start after end) has IoU 0. R1@m is the share of questions whose
predicted span has IoU >= m; mIoU their mean IoU. An answer with no span scores IoU 0.

>>> iou((2.0, 6.0), (4.0, 8.0))
0.3333333333333333
>>> iou((8.0, 4.0), (4.0, 8.0))
0.0
"""

from __future__ import annotations

THRESHOLDS = (0.3, 0.5, 0.7)


def iou(pred: tuple[float, float], gold: tuple[float, float]) -> float:
    inter = max(min(pred[1], gold[1]) - max(pred[0], gold[0]), 0.0)
    union = max(pred[1], gold[1]) - min(pred[0], gold[0])
    return inter / union if union > 0 else 0.0


def grounding_scores(pred: tuple[float, float] | None, gold: tuple[float, float]) -> dict[str, float]:
    """``{"miou": IoU, "r1@0.3": 0/1, "r1@0.5": 0/1, "r1@0.7": 0/1}`` for one answer."""
    value = 0.0 if pred is None else iou(pred, gold)
    return {"miou": value, **{f"r1@{m}": float(value >= m) for m in THRESHOLDS}}
