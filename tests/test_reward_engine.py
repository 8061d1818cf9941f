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
from caprl.reward.presets import preset_config
from caprl.schema import MCQ, SchemaError
from caprl.synth import make_image_sample, make_video_sample


@pytest.fixture
def one_thread():
    """The tiny reader's ops are too small to split: on a busy 2-core machine one intra-op thread decodes faster."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


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


def test_generate_path_rewards_do_not_depend_on_the_batch(reader, items, one_thread):
    """Issue 22: under ``--preset caprl`` (10 tokens sampled at 0.6) a caption scored 0.0 in a batch and 0.125 alone.
    Each asked question samples from its own seed, so alone, in a larger batch of other lengths, or reordered, every
    question gets the same sampled text."""
    others = []
    for i in range(2):
        sample, _ = make_image_sample(i, seed=9)
        others += [RewardItem(caption=sample.references["brief"], mcqs=sample.mcqs[:2], id=f"other/{i}")]
    mine = [items[0], items[3]]
    batch = [others[0], mine[0], mine[1], others[1]]

    def asked(results):
        return [[(q.mcq_index, tuple(q.order), q.raw_output) for q in r.questions] for r in results]

    for seed in range(3):
        engine = RewardEngine(reader, preset_config("caprl", n_questions=3, seed=seed))
        alone = [engine.score([it])[0] for it in mine]
        together = engine.score(batch)
        assert asked(together[1:3]) == asked(alone)
        assert [r.reward for r in together[1:3]] == [r.reward for r in alone]
        if seed == 0:
            assert asked(engine.score(batch[::-1])[::-1]) == asked(together)


def test_generate_path_samples_each_question_from_its_own_seed(reader, items, one_thread):
    """Unshuffled, a question drawn twice is the same prompt: its samples still differ (each draw has its own seed),
    and the same draw under another global seed samples anew, so the batch invariance is not bought by ignoring
    seeds."""
    outputs: dict[tuple[int, int], set[str]] = {}
    for seed in range(3):
        engine = RewardEngine(reader, preset_config("caprl", shuffle=False, n_questions=6, seed=seed))
        for k, r in enumerate(engine.score(items[:1])):
            for q in r.questions:
                outputs.setdefault((k, q.mcq_index), set()).add(q.raw_output)
    assert max(len(texts) for texts in outputs.values()) > 1


def test_caprl_preset_scores_six_option_questions(reader, items):
    """Issue 22: the preset labels its "cannot answer" option F; a question with six options (A-F taken) gets it
    under G instead of failing the request."""
    six = MCQ(question="Which colour is the largest shape?", options=["red", "green", "blue", "grey", "pink", "teal"],
              gold=2)  # fmt: skip
    item = RewardItem(caption=items[0].caption, mcqs=[six])
    engine = RewardEngine(reader, preset_config("caprl", n_questions=2))
    [result] = engine.score([item])
    for q in result.questions:
        assert len(q.order) == 7 and q.order[-1] is None and q.gold != "G"
    for ask in engine._plan([item]):
        lines = engine.messages(item.caption, ask.shown)[0]["content"].splitlines()
        shown = [f"   - {letter}) {o}" for letter, o in zip("ABCDEF", ask.shown.options[:6], strict=True)]
        assert lines[-7:-1] == shown
        assert lines[-1] == "   - G) Can not answer based on the caption"


def test_generate_path_seeds_reach_the_reader(items, caplog):
    """Per-question seeds go to readers that take ``seeds``; an older reader gets the config's seed, with a warning."""

    class Seeded:
        name = "seeded"

        def generate(self, prompts, *, max_new_tokens=10, temperature=0.0, seed=None, seeds=None):
            self.seeds = list(seeds)
            return [" B." for _ in prompts]

    class Unseeded:
        name = "unseeded"

        def generate(self, prompts, *, max_new_tokens=10, temperature=0.0, seed=None):
            self.seed = seed
            return [" B." for _ in prompts]

    config = preset_config("caprl", n_questions=3, seed=5)
    seeded = Seeded()
    RewardEngine(seeded, config).score(items[:2])
    together = seeded.seeds
    RewardEngine(seeded, config).score(items[1:2])
    assert len(together) == 6 == len(set(together)) and seeded.seeds == together[3:]
    unseeded = Unseeded()
    engine = RewardEngine(unseeded, config)
    with caplog.at_level("WARNING", logger="caprl.reward.engine"):
        first = engine.score(items[:1])
        engine.score(items[:1])
    assert unseeded.seed == 5 and first[0].questions[0].chosen == "B"
    assert sum("takes no per-prompt seeds" in r.message for r in caplog.records) == 1
