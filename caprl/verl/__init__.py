"""verl integration: the CapRL reward as verl's ``compute_score`` (``caprl.verl.reward``), batched client-side into
bulk requests to the reward service. Launch recipe: ``recipes/verl/`` and ``docs/verl.md``.

Importing this package does not import verl: the adapter only speaks verl's function signature.
"""

from caprl.verl.reward import compute_score, mcqs_from_ground_truth, reward_item, score_batch

__all__ = ["compute_score", "mcqs_from_ground_truth", "reward_item", "score_batch"]
