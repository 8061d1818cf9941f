"""GRPO moves the policy where a programmatic reward points, in seconds: the cheap half of the learning proof.

The tiny captioner (random weights: every token is a choice it can be taught) is trained for a few GRPO steps
with the demo's algorithm (RLOO advantages, sequence-mean loss, the KL term) against a reward that counts
characters: once paying for shorter captions, once for longer ones. A sign flip, zeroed advantages, a reward
routed to the wrong caption or a broken update leaves the two runs where they started or sends them the same
way. The other half, that the real reader's reward makes captions carry more of the image, is the demo's
learning test (``tests/test_demo_learns.py``). The demo's own captioner was tried here first: its captions'
length is set by the image more than by its sampling, and 12 steps did not move it either way.
"""

from __future__ import annotations

import pytest

from caprl.reward.engine import RewardResult

STEPS = 25


class LengthReward:
    """Reward = ``sign`` x characters / 50, for every caption; records the mean length it saw, step by step."""

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.chars: list[float] = []

    def score(self, items):
        counts = [len(it.caption) for it in items]
        self.chars.append(sum(counts) / len(counts))
        return [
            RewardResult(id=it.id, reward=self.sign * n / 50, qa=0.0, accuracy=0.0, questions=[])
            for it, n in zip(items, counts, strict=True)
        ]

    def close(self):
        pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_models):
    from caprl.demo.pipeline import DEMO_CONFIG
    from caprl.synth import generate_image_dataset
    from caprl.train.config import load_config
    from caprl.train.run import train

    root = tmp_path_factory.mktemp("grpo-follows")
    data = generate_image_dataset(32, root / "shapes", seed=3, progress=False)
    out = {}
    for name, sign in (("shorter", -1.0), ("longer", 1.0)):
        reward = LengthReward(sign)
        cfg = load_config(
            DEMO_CONFIG,
            [
                f"run_dir={root / name}",
                f"data.train={data}",
                f"model.policy={tiny_models.captioner}",
                "reward.service=http://127.0.0.1:9",  # never called: the scorer below stands in
                f"optim.max_steps={STEPS}",
                "optim.learning_rate=5e-3",
                "rollout.max_completion_length=16",
                "checkpoint.resume=never",
                "checkpoint.save_steps=1000",
                "logging.report_to=none",
                "threads=2",
            ],
        )
        result = train(cfg, scorer=reward, progress_bar=False)
        assert result.steps == STEPS
        out[name] = reward.chars
    return out


def _mean(xs):
    return sum(xs) / len(xs)


def test_grpo_follows_the_reward_both_ways(runs):
    shorter, longer = runs["shorter"], runs["longer"]
    assert len(shorter) == len(longer) == STEPS
    # The same policy, data and seed: both runs start alike (the first steps' sampled captions).
    start = _mean(shorter[:3] + longer[:3])
    assert abs(_mean(shorter[:3]) - _mean(longer[:3])) < 0.2 * start
    # ...and part ways as their rewards say (measured: 49 characters -> 27 and -> 62 in 25 steps).
    assert _mean(shorter[-5:]) < 0.75 * start, shorter
    assert _mean(longer[-5:]) > 1.1 * start, longer
    assert _mean(longer[-5:]) > 1.5 * _mean(shorter[-5:])
