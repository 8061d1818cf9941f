"""The CPU demo learns: ``caprl demo`` as ``make demo`` runs it (shipped seeing captioner, real reader behind the
reward service, seed 0) raises held-out M_Acc by at least 10 points with the paired interval above zero, and the
trick checks move with it.

It is the demo itself rather than a smaller copy: with fewer held-out questions a 10-point change is no longer
significant, and with fewer GRPO steps the captioner has not moved yet (docs/train.md, "Why these sizes").
Alone: ``pytest -m learning`` (about 15 minutes on 2 cores; the reader is fetched once before).
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.learning, pytest.mark.real_reader, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    from caprl.demo.pipeline import DemoSettings, run_demo
    from caprl.models.catalog import DEFAULT_READER
    from caprl.models.fetch import fetch_model

    fetch_model(DEFAULT_READER, progress=False)
    # The reader computes as the demo does (bfloat16 where the CPU has bfloat16 matrix units), not in the float32
    # the other tests pin for exact comparisons: this test is about learning, and float32 triples its time.
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CAPRL_CPU_DTYPE", raising=False)
        return run_demo(DemoSettings(out=tmp_path_factory.mktemp("demo"), seed=0), say=lambda _: None)


def test_held_out_m_acc_rises_by_ten_points_with_the_interval_above_zero(summary):
    assert summary["grpo"]["steps"] == 50 and summary["heldout_questions"] >= 150
    lo, hi = summary["change_ci95_points"]
    assert summary["change_points"] >= 10.0, summary["change_points"]
    assert lo > 0.0
    # change_points is rounded to 0.1 point in summary.json
    assert 100 * (summary["after"]["m_acc"] - summary["before"]["m_acc"]) == pytest.approx(
        summary["change_points"], abs=0.051
    )


def test_the_gain_is_information_not_a_trick(summary):
    checks = summary["checks"]
    # The same captions read with every question's options shuffled differently move with M_Acc...
    assert checks["reshuffled_change_points"] >= 0.5 * summary["change_points"]
    # ...and the captions carry more over the no-caption floor than before.
    assert checks["gain_over_blind_after_points"] > checks["gain_over_blind_before_points"] + 5
    # The captions say more of what the questions ask about.
    before, after = summary["before"]["mentions"], summary["after"]["mentions"]
    assert after["position"] > before["position"] and after["count"] > before["count"]


def test_summary_accounts_for_the_wall_time(summary):
    stages = summary["wall_s_by_stage"]
    assert {"warm-up", "GRPO", "GRPO: reward wait", "eval before: reading", "eval after: reading"} <= set(stages)
    assert 0.0 < summary["grpo"]["reward_wait_share"] < 1.0
    assert sum(v for k, v in stages.items() if not k.startswith("GRPO: ")) <= summary["wall_s"] + 1.0
