"""Paying for truth (issue 20): the wrong-answer penalty in hard and soft modes, the correctness term verified on
the shapes-world scene, their path through the service, training metrics and the verl function's options."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np
import pytest

from caprl.readers.base import LetterQuery, LetterScores
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem
from caprl.synth import make_image_sample


class ScriptedReader:
    """Puts all its probability on the letter at position ``k % len(letters)`` of the k-th query: over enough
    queries every position — gold, wrong, and "cannot be answered" — is chosen."""

    name = "scripted"

    def __init__(self) -> None:
        self.k = 0

    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        out = []
        for q in queries:
            probs = np.full(len(q.letters), 0.02)
            probs[self.k % len(q.letters)] = 1.0
            self.k += 1
            out.append(LetterScores(q.letters, probs / probs.sum(), 1.0))
        return out

    def generate(self, messages, **kw):  # pragma: no cover - the score path is used
        raise NotImplementedError


def _items(level: str = "detailed", n: int = 4) -> list[RewardItem]:
    out = []
    for i in range(n):
        sample, _ = make_image_sample(i, seed=3)
        out.append(
            RewardItem(caption=sample.references[level], mcqs=sample.mcqs, id=sample.id, scene=sample.metadata["scene"])
        )
    return out


def test_hard_scores_right_abstain_and_wrong_apart():
    cfg = RewardConfig(mode="hard", hard_choice="argmax", wrong_penalty=0.5)
    results = RewardEngine(ScriptedReader(), cfg).score(_items())
    seen = set()
    for r in results:
        for q in r.questions:
            abstain = "ABCDEFG"[q.order.index(None)]
            want = 1.0 if q.chosen == q.gold else 0.0 if q.chosen == abstain else -0.5
            assert q.score == want
            seen.add(want)
        assert r.reward == pytest.approx(np.mean([q.score for q in r.questions]))
    assert seen == {1.0, 0.0, -0.5}  # every branch was taken
    # Without the penalty a wrong answer costs what abstaining costs (CapRL).
    free = RewardEngine(ScriptedReader(), RewardConfig(mode="hard", hard_choice="argmax")).score(_items())
    assert {q.score for r in free for q in r.questions} == {0.0, 1.0}


def test_soft_penalty_is_the_wrong_options_mass(tiny_models):
    from caprl.readers.transformers import TransformersReader

    reader = TransformersReader(tiny_models.reader)
    items = _items(n=2)
    plain = RewardEngine(reader, RewardConfig(mode="soft")).score(items)
    penalised = RewardEngine(reader, RewardConfig(mode="soft", wrong_penalty=2.0)).score(items)
    for a, b in zip(plain, penalised, strict=True):
        for qa, qb in zip(a.questions, b.questions, strict=True):
            assert qa.probs == qb.probs
            abstain = "ABCDEFG"[qb.order.index(None)]
            wrong = 1.0 - qb.probs[qb.gold] - qb.probs[abstain]
            assert qa.score == pytest.approx(qa.probs[qa.gold])
            assert qb.score == pytest.approx(qb.probs[qb.gold] - 2.0 * wrong)
            assert qb.score < qa.score


def test_correctness_term_is_the_verified_share():
    items = _items("detailed")
    cfg = RewardConfig(mode="hard", hard_choice="argmax", correctness_weight=0.5)
    true = RewardEngine(ScriptedReader(), cfg).score(items)
    assert all(r.correctness == 1.0 for r in true)
    assert all(r.reward == pytest.approx(r.qa + 0.5) for r in true)
    # One object's colour changed: that sentence is false, the rest of the caption true.
    scene = items[0].scene
    o = scene["objects"][0]
    other = "black" if o["colour"] != "black" else "pink"
    lie = items[0].caption.replace(f"{o['size']} {o['colour']} {o['shape']}", f"{o['size']} {other} {o['shape']}", 1)
    assert lie != items[0].caption
    n_sentences = items[0].caption.count(".")
    (r,) = RewardEngine(ScriptedReader(), cfg).score([items[0].model_copy(update={"caption": lie})])
    assert r.correctness == pytest.approx((n_sentences - 1) / n_sentences)
    # Saying nothing verifies nothing; an unreadable sentence counts as said and unverified.
    (empty,) = RewardEngine(ScriptedReader(), cfg).score([items[0].model_copy(update={"caption": ""})])
    assert empty.correctness == 0.0
    garbled = items[0].model_copy(update={"caption": items[0].caption + " There in total."})
    (g,) = RewardEngine(ScriptedReader(), cfg).score([garbled])
    assert g.correctness == pytest.approx(n_sentences / (n_sentences + 1))


def test_correctness_without_a_scene_is_refused():
    item = _items(n=1)[0].model_copy(update={"scene": None})
    engine = RewardEngine(ScriptedReader(), RewardConfig(correctness_weight=1.0))
    with pytest.raises(ValueError, match="needs a verifier: items must carry their shapes-world 'scene'"):
        engine.score([item])


def test_service_checks_the_scene_and_returns_the_term():
    from caprl.server.serve import BackgroundServer
    from caprl.server.settings import ServerSettings

    items = _items(n=2)
    body = [it.model_dump(mode="json", exclude_none=True) for it in items]
    options = {"correctness_weight": 0.5, "wrong_penalty": 1.0, "hard_choice": "argmax"}
    with BackgroundServer(RewardEngine(ScriptedReader(), RewardConfig()), ServerSettings()) as srv:
        ok = httpx.post(srv.url + "/v1/rewards", json={"items": body, "options": options}, timeout=60)
        assert ok.status_code == 200, ok.text
        got = ok.json()["results"]
        want = RewardEngine(ScriptedReader(), RewardConfig(**options)).score(items)
        assert [r["correctness"] for r in got] == [1.0, 1.0]
        assert [r["reward"] for r in got] == pytest.approx([r.reward for r in want])
        no_scene = [{k: v for k, v in b.items() if k != "scene"} for b in body]
        bad = httpx.post(srv.url + "/v1/rewards", json={"items": no_scene, "options": options}, timeout=60)
        assert bad.status_code == 422 and "scene" in bad.text and "needs a verifier" in bad.text
        broken = [{**body[0], "scene": {"objects": "nope"}}]
        bad = httpx.post(srv.url + "/v1/rewards", json={"items": broken, "options": options}, timeout=60)
        assert bad.status_code == 422 and "not a shapes-world scene graph" in bad.text
        worse = httpx.post(srv.url + "/v1/rewards", json={"items": body, "options": {"wrong_penalty": -1}}, timeout=60)
        assert worse.status_code == 422 and "wrong_penalty" in worse.text


def test_training_metrics_carry_truth_figures():
    from caprl.train.reward import StepStats, summarize

    items = _items("detailed", n=3)
    stats = StepStats(rewards=[1.0, 1.0, 1.0])
    stats.scenes = [it.scene for it in items]
    stats.truth_captions = [items[0].caption, items[1].caption, "There is a large black star in the center."]
    record = summarize(stats)
    assert record["truth_precision"] < 1.0 and record["truth_hallucination_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert "truth_precision" not in summarize(StepStats(rewards=[0.5]))  # not the shapes world: no figures


def test_verl_function_passes_the_penalty():
    from caprl.verl.remote import read_settings

    settings = read_settings({"urls": "http://127.0.0.1:1", "wrong_penalty": 1.0})
    assert settings.option_dict["wrong_penalty"] == 1.0


def test_refuted_form_costs_each_unconfirmed_statement():
    items = _items("detailed", n=1)
    item = items[0]
    scene = item.scene
    o = scene["objects"][0]
    other = "black" if o["colour"] != "black" else "pink"
    lie = item.caption.replace(f"{o['size']} {o['colour']} {o['shape']}", f"{o['size']} {other} {o['shape']}", 1)
    cfg = RewardConfig(mode="hard", hard_choice="argmax", correctness_weight=0.2, correctness_form="refuted")
    engine = RewardEngine(ScriptedReader(), cfg)
    (true,) = engine.score([item])
    assert true.reward == pytest.approx(true.qa)  # nothing to refute
    one_lie = item.model_copy(update={"caption": lie})
    two_wrongs = item.model_copy(update={"caption": lie + " There in total."})  # a lie and an unread sentence
    (a,) = RewardEngine(ScriptedReader(), cfg).score([one_lie])
    (b,) = RewardEngine(ScriptedReader(), cfg).score([two_wrongs])
    assert a.reward == pytest.approx(a.qa - 0.2) and b.reward == pytest.approx(b.qa - 0.4)
    # Unlike the share, true statements added around the lie do not buy it back.
    padded = item.model_copy(update={"caption": lie + " " + item.caption})
    (c,) = RewardEngine(ScriptedReader(), cfg).score([padded])
    assert c.reward == pytest.approx(c.qa - 0.2)
    share = RewardConfig(mode="hard", hard_choice="argmax", correctness_weight=0.2)
    (d,) = RewardEngine(ScriptedReader(), share).score([padded])
    (e,) = RewardEngine(ScriptedReader(), share).score([one_lie])
    assert d.correctness > e.correctness


def test_claim_verdicts_count_as_refuted():
    from caprl.reward.correctness import ClaimVerdict, Verification

    v = Verification(2 / 3, [ClaimVerdict(claim=c, true=t) for c, t in (("a", True), ("b", False), ("c", True))])
    assert v.not_confirmed == 1 and Verification(1.0, refuted=0).not_confirmed == 0
