"""The reward engine on the tiny real reader: modes, seeding, batching invariance, parts, errors."""

import random

import numpy as np
import pytest

from caprl.readers.base import LetterScores
from caprl.reward.engine import (
    RewardConfig,
    RewardEngine,
    RewardItem,
    _sample_letter,
    reward_item_from_dict,
)
from caprl.schema import SchemaError
from caprl.synth import make_image_sample, make_video_sample


@pytest.fixture(scope="module")
def reader(tiny_models):
    from caprl.readers.transformers import TransformersReader

    return TransformersReader(tiny_models.reader)


@pytest.fixture(scope="module")
def items():
    out = []
    for i in range(3):
        sample, _ = make_image_sample(i, seed=5)
        for level in ("exhaustive", "terse"):
            out.append(RewardItem(caption=sample.references[level], mcqs=sample.mcqs, id=f"{sample.id}/{level}"))
    return out


def test_same_seed_same_rewards_and_seed_changes_shuffles(reader, items):
    a = RewardEngine(reader, RewardConfig(seed=1)).score(items)
    b = RewardEngine(reader, RewardConfig(seed=1)).score(items)
    assert [r.model_dump() for r in a] == [r.model_dump() for r in b]
    c = RewardEngine(reader, RewardConfig(seed=2)).score(items)
    assert [q.order for r in a for q in r.questions] != [q.order for r in c for q in r.questions]


def test_batching_does_not_change_rewards(reader, items):
    engine = RewardEngine(reader, RewardConfig(mode="soft"))
    together = engine.score(items)
    alone = [engine.score([it])[0] for it in items]
    reordered = engine.score(items[::-1])[::-1]
    for x, y, z in zip(together, alone, reordered, strict=True):
        assert x.reward == pytest.approx(y.reward, abs=1e-5) == pytest.approx(z.reward, abs=1e-5)


def test_result_parts_are_consistent(reader, items):
    res = RewardEngine(reader, RewardConfig(mode="soft", unanswerable_option=True)).score(items)
    for item, r in zip(items, res, strict=True):
        assert len(r.questions) == len(item.mcqs)  # n=None asks every question once
        assert sorted(q.mcq_index for q in r.questions) == list(range(len(item.mcqs)))
        for q in r.questions:
            mcq = item.mcqs[q.mcq_index]
            assert len(q.order) == len(mcq.options) + 1 and q.order[-1] is None
            assert q.order[ord(q.gold) - 65] == mcq.gold
            assert sum(q.probs.values()) == pytest.approx(1.0)
            assert q.score == pytest.approx(q.probs[q.gold])
            assert q.chosen == max(q.probs, key=q.probs.get)
        assert r.reward == pytest.approx(np.mean([q.score for q in r.questions]))
        assert r.accuracy == pytest.approx(np.mean([q.chosen == q.gold for q in r.questions]))


def test_n_questions_drawn_with_replacement(reader, items):
    res = RewardEngine(reader, RewardConfig(n_questions=20)).score(items[:1])[0]
    assert len(res.questions) == 20
    assert len({q.mcq_index for q in res.questions}) < 20


def test_sampled_letter_follows_the_distribution():
    scores = LetterScores(letters="ABCD", probs=np.array([0.1, 0.2, 0.3, 0.4]), letter_mass=1.0)
    rng = random.Random(0)
    draws = [_sample_letter(scores, 1.0, rng) for _ in range(20000)]
    freq = [draws.count(x) / len(draws) for x in "ABCD"]
    assert freq == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.015)
    cold = [_sample_letter(scores, 0.05, rng) for _ in range(2000)]
    assert cold.count("D") / len(cold) > 0.95  # low temperature approaches argmax


def test_soft_is_the_expectation_of_hard_at_temperature_one(reader):
    many = []
    for i in range(12):
        sample, _ = make_image_sample(i, seed=11)
        many += [
            RewardItem(caption=sample.references[lvl], mcqs=sample.mcqs) for lvl in ("exhaustive", "brief", "terse")
        ]
    hard, soft = [], []
    for seed in range(3):
        hard += [r.qa for r in RewardEngine(reader, RewardConfig(mode="hard", temperature=1.0, seed=seed)).score(many)]
        soft += [r.qa for r in RewardEngine(reader, RewardConfig(mode="soft", seed=seed)).score(many)]
    # Per item and seed the shuffle is the same in both modes, so E[hard] = soft; ~750 questions in all give
    # the mean of hard a standard error under 0.02.
    assert np.mean(hard) == pytest.approx(np.mean(soft), abs=0.06)


def test_blind_gain_is_zero_for_an_empty_caption(reader, items):
    engine = RewardEngine(reader, RewardConfig(mode="blind_gain", blind_score="soft"))
    empty = items[0].model_copy(update={"caption": ""})
    res = engine.score([empty, items[0]])
    assert res[0].reward == pytest.approx(0.0, abs=1e-4)
    for q in res[1].questions:
        assert q.score == pytest.approx(q.probs[q.gold] - q.blind_score)


def test_generate_path_counts_parse_failures(reader, items):
    res = RewardEngine(reader, RewardConfig(path="generate", temperature=1.0)).score(items[:2])
    for r in res:
        assert r.parse_failures == sum(q.chosen is None for q in r.questions)
        assert all(q.raw_output is not None for q in r.questions)
        assert r.reward == pytest.approx(np.mean([q.chosen == q.gold for q in r.questions]))


def test_length_and_timestamp_terms(reader):
    video, _ = make_video_sample(0, seed=3)
    cap = video.references["exhaustive"]
    item = RewardItem(caption=cap, mcqs=video.mcqs, modality="video", caption_tokens=2560)
    cfg = RewardConfig(mode="soft", length_weight=0.2, timestamp_weight=0.2)
    r = RewardEngine(reader, cfg).score([item])[0]
    assert r.length == pytest.approx(0.5)
    assert r.timestamp is not None and r.timestamp > 0.5
    assert r.reward == pytest.approx(r.qa + 0.2 * 0.5 + 0.2 * r.timestamp)
    image_item = item.model_copy(update={"modality": "image"})
    assert RewardEngine(reader, cfg).score([image_item])[0].timestamp is None
    with pytest.raises(ValueError, match="count_tokens"):
        RewardEngine(reader, cfg).score([item.model_copy(update={"caption_tokens": None})])
    counted = RewardEngine(reader, cfg, count_tokens=lambda t: 4000).score(
        [item.model_copy(update={"caption_tokens": None})]
    )
    assert counted[0].length == 0.0


def test_malformed_mcq_rejected_with_id_and_reason():
    record = {"id": "cap-7", "caption": "x", "mcqs": [{"question": "q", "options": ["a", "b"], "gold": 3}]}
    with pytest.raises(SchemaError, match=r"id='cap-7', field 'mcqs.0': .*outside the 2 options"):
        reward_item_from_dict(record)
    with pytest.raises(SchemaError, match=r"id='cap-8', field 'mcqs': .*at least one MCQ"):
        reward_item_from_dict({"id": "cap-8", "caption": "x", "mcqs": []})


def test_question_draw_per_item_asks_every_caption_the_same_questions(reader, items):
    def asked(config, item_list):
        results = RewardEngine(reader, config).score(item_list)
        return [[(q.mcq_index, tuple(q.order)) for q in r.questions] for r in results]

    # items[0] and items[1]: the exhaustive and the terse caption of one image.
    same_image = items[:2]
    per_caption = asked(RewardConfig(mode="soft", n_questions=3, seed=4), same_image)
    per_item = asked(RewardConfig(mode="soft", n_questions=3, seed=4, question_draw="item"), same_image)
    assert per_item[0] == per_item[1]  # same questions, same shuffles: the captions alone differ
    assert per_caption[0] != per_caption[1]
    # Still a function of the item and the seed only: alone or in a batch, and another seed draws anew.
    assert asked(RewardConfig(mode="soft", n_questions=3, seed=4, question_draw="item"), same_image[1:]) == per_item[1:]
    other = asked(RewardConfig(mode="soft", n_questions=3, seed=5, question_draw="item"), same_image)
    assert other[0] != per_item[0]
