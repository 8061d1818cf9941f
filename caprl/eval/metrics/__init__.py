"""Official metrics of the Prism benchmarks, each a small pure function with worked examples in its tests."""

from caprl.eval.metrics.anls import anls, anls_package
from caprl.eval.metrics.chartqapro import chartqapro_item_score, chartqapro_score
from caprl.eval.metrics.grounding import grounding_scores, iou
from caprl.eval.metrics.mcq import mcq_accuracy
from caprl.eval.metrics.relaxed import relaxed_accuracy, relaxed_correct

__all__ = [
    "anls",
    "anls_package",
    "chartqapro_item_score",
    "chartqapro_score",
    "grounding_scores",
    "iou",
    "mcq_accuracy",
    "relaxed_accuracy",
    "relaxed_correct",
]
