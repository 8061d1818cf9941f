"""Training: GRPO/RLOO of a VLM captioner with the CapRL reward, on TRL (one node) for images and videos.

- ``config``: the run's settings (YAML + ``key=value`` overrides) and their mapping to ``trl.GRPOConfig``;
- ``data``: caprl datasets as TRL rows, media loaded by sample id;
- ``media``: processor inputs per prompt row (images and sampled video frames) and their collation;
- ``reward``: the reward function (in-process engine or the reward service) and per-step statistics;
- ``trainer``: ``CaptionGRPOTrainer`` (TRL's GRPOTrainer + media for generation and log-probs, RLOO);
- ``callbacks``: ``metrics.jsonl`` and ``samples.jsonl``;
- ``run``: ``train(config)``, resume, final weights; ``sft``: the supervised warm-up the demo uses;
- ``cli``: ``caprl train``.

Cluster scale goes through verl instead: see ``caprl.verl``.
"""

from caprl.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
