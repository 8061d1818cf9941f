"""verl integration: the CapRL reward as verl's reward function (``caprl.verl.reward``: ``compute_score_async`` for
verl's reward loop, ``compute_score`` for every call form verl and CapRL++ use), batched client-side into requests
to caprl's reward service or a CapRL ``/get_reward`` server. Launch recipe: ``recipes/verl/`` and ``docs/verl.md``.

Importing this package does not import verl: the adapter only speaks verl's function signatures.
"""

from caprl.verl.reward import (
    SampleReward,
    VerlRewardError,
    compute_score,
    compute_score_async,
    mcqs_from_ground_truth,
    reward_item,
    score_batch,
)

__all__ = [
    "SampleReward",
    "VerlRewardError",
    "compute_score",
    "compute_score_async",
    "mcqs_from_ground_truth",
    "reward_item",
    "score_batch",
]
