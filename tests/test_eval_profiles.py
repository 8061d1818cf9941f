"""Scoring profiles (issue 23): each profile reproduces its harness's extraction, metric and aggregate exactly.

The expected scores in ``tests/fixtures/prism/profiles/expected.json`` were computed by the upstream functions
themselves (``tests/upstream/regenerate.py``, at the commits it pins); every tricky output of
``tests/profile_cases.py`` must score the same through caprl's profile as it did upstream. With
``CAPRL_UPSTREAM_GIT=lmms=DIR,vlmevalkit=DIR,caprl=DIR`` the upstream code is run again and compared live.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from profile_cases import MMVU_JUDGE_CASES, MMVU_JUDGE_OUTPUTS, MMVU_JUDGE_REPLIES, cases

from caprl.eval.benchmarks import get_benchmark
from caprl.eval.config import PrismConfig
from caprl.eval.profiles import ProfileError, aggregate_figures, coverage, covering, scoring
from caprl.eval.types import EvalItem, ItemScore
from caprl.schema import ImageMedia

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "prism" / "profiles" / "expected.json").read_text())
PAIRS = [(p, b) for p, benches in EXPECTED["scores"].items() for b in benches]


def item(fields: dict, benchmark: str) -> EvalItem:
    fields = {"question": "Q?", **fields}
    return EvalItem(id="q", media_id="m", media=ImageMedia(path="x.png"), category="c", **fields)


def profile_score(profile: str, benchmark: str, fields: dict, output: str) -> float:
    rules = scoring(profile, benchmark)
    it = item(fields, benchmark)
    if rules.judge_reply is not None:
        return rules.judge_reply(output) or 0.0  # an unreadable verdict counts 0, as upstream's max(x, 0)
    return rules.score(rules.answer(output, it, "generate"), it)["score"]


@pytest.mark.parametrize(("profile", "benchmark"), PAIRS, ids=[f"{p}:{b}" for p, b in PAIRS])
def test_profile_scores_as_upstream(profile, benchmark):
    if profile == "caprl-paper":
        pytest.importorskip("math_verify")
    wrong = []
    for case, expected in zip(cases()[benchmark], EXPECTED["scores"][profile][benchmark], strict=True):
        for output, want in zip(case["outputs"], expected, strict=True):
            got = profile_score(profile, benchmark, case["item"], output)
            if got != pytest.approx(want, abs=1e-9):
                wrong.append((case["item"].get("answers") or case["item"].get("gold"), output, got, want))
    assert not wrong, f"{len(wrong)} outputs score differently from upstream (gold, output, caprl, upstream): {wrong}"


def test_every_profile_pair_has_fixtures():
    for profile, benches in coverage().items():
        if profile == "caprl":
            continue
        assert sorted(benches) == sorted(EXPECTED["scores"][profile]), profile


def test_fixtures_hold_the_disputed_outputs():
    """The outputs the issue names are among the cases, and the harnesses really disagree on them."""
    scores = EXPECTED["scores"]
    outs = cases()["chartqa"][0]["outputs"]
    for disputed in ("Answer: 17", "**17**", "17\n\nExplanation: the bar reads 17."):
        i = outs.index(disputed)
        assert scores["lmms-eval"]["chartqa"][0][i] == 0.0 and scores["vlmevalkit"]["chartqa"][0][i] == 0.0
        assert profile_score("caprl", "chartqa", cases()["chartqa"][0]["item"], disputed) == 1.0
    replies = cases()["mmbench-video"][0]["outputs"]
    vlm = dict(zip(replies, scores["vlmevalkit"]["mmbench-video"][0], strict=True))
    assert (vlm["2."], vlm["**2**"], vlm["<think>close enough</think>2"], vlm["4"]) == (0.0, 0.0, 0.0, 4.0)


def test_lmms_eval_mmvu_asks_the_judge_only_what_its_rules_reject():
    """Open MMVU answers stay the answer text (read, never a parse failure); those the rules accept score 1 and
    are not judged; the others go to the judge, in the messages lmms-eval's own pipeline sends for them (computed
    by the upstream code: ``expected.json``'s ``judges``)."""
    rules, bench = scoring("lmms-eval", "mmvu"), get_benchmark("mmvu")
    assert rules.judge is not None and rules.judge.prompt_sha != bench.metric.judge.prompt_sha
    sent = EXPECTED["judges"]["lmms-eval"]["mmvu"]["prompts"]
    wrong = []
    for case, expected in zip(MMVU_JUDGE_CASES, sent, strict=True):
        it = item(case, "mmvu")
        for output, want in zip(MMVU_JUDGE_OUTPUTS, expected, strict=True):
            prediction = rules.answer(output, it, "generate")
            assert prediction == output and rules.parsed(prediction)
            if rules.sends_to_judge(prediction, it, bench.metric.judged(it)):
                got = rules.judge.messages(it.question, "; ".join(it.answers), prediction)
            else:
                got = None
                assert rules.score(prediction, it)["score"] == 1.0
            if got != want:
                wrong.append((case["answers"][0], output, got, want))
    assert not wrong, (
        f"{len(wrong)} outputs are judged differently from upstream (gold, output, caprl, upstream): {wrong}"
    )
    assert sum(p is None for row in sent for p in row) >= 8 and sum(p is not None for row in sent for p in row) >= 40
    mcq = item(cases()["mmvu"][0]["item"], "mmvu")
    assert not rules.sends_to_judge("B", mcq, bench.metric.judged(mcq))  # multiple choice: rules only, upstream too
    assert not rules.sends_to_judge("x", mcq, True)


def test_lmms_eval_mmvu_reads_verdicts_as_upstream():
    """The judge's reply is read by lmms-eval's ``parse_binary_response``: "1" anywhere is right ("10", "0.1", a
    "1" inside a <think> block), "INCORRECT" wins over "CORRECT", nothing is ever unreadable."""
    spec = scoring("lmms-eval", "mmvu").judge
    want = EXPECTED["judges"]["lmms-eval"]["mmvu"]["verdicts"]
    got = [spec.parse(reply) for reply in MMVU_JUDGE_REPLIES]
    assert got == want, list(zip(MMVU_JUDGE_REPLIES, got, want, strict=True))
    assert dict(zip(MMVU_JUDGE_REPLIES, got, strict=True))["<think>maybe 1</think>0"] == 1.0
    assert spec.parse(None) == 0.0  # type: ignore[arg-type]


def test_judge_prompt_without_system_message_and_other_profiles_unchanged():
    """The other benchmarks and profiles keep the benchmark's judge and rule (a system message, JSON verdicts)."""
    from caprl.eval.metrics.judge import MMVU_OPEN_ENDED

    assert [m["role"] for m in MMVU_OPEN_ENDED.messages("Q", "R", "A")] == ["system", "user"]
    caprl_rules, bench = scoring("caprl", "mmvu"), get_benchmark("mmvu")
    assert caprl_rules.judge is None and caprl_rules.judged is None
    it = item({"answers": ["Water"]}, "mmvu")
    assert caprl_rules.sends_to_judge("Water", it, bench.metric.judged(it))
    assert not caprl_rules.sends_to_judge(None, it, bench.metric.judged(it))
    for profile, benches in coverage().items():
        for name in benches:
            if (profile, name) != ("lmms-eval", "mmvu"):
                assert scoring(profile, name).judge is None and scoring(profile, name).judged is None, (profile, name)


def test_lmms_eval_timelens_reports_recall_at_thresholds():
    rules = scoring("lmms-eval", "timelens")
    it = item({"span": [10.0, 20.0]}, "timelens")
    got = rules.score(rules.answer("The event happens in 12.5 - 25 seconds.", it, "generate"), it)
    assert got == pytest.approx({"score": 0.5, "r1@0.3": 1.0, "r1@0.5": 1.0, "r1@0.7": 0.0})
    assert rules.answer("no idea", it, "generate") is None and rules.aggregate == "group_mean"


# ----------------------------------------------------------------------------------------------- aggregates


def _scores(rows: list[tuple[float, bool, str]]) -> list[ItemScore]:
    return [
        ItemScore(benchmark="b", question_id=str(i), media_id=str(i), category="c", scores=[s], parsed=[p], group=g)
        for i, (s, p, g) in enumerate(rows)
    ]


def test_mmstar_average_is_the_mean_of_l2_means_as_lmms_eval():
    rows = [(1.0, True, "a"), (0.0, True, "a"), (1.0, True, "a"), (1.0, True, "b"), (0.0, True, "c"), (0.0, True, "c")]
    got = aggregate_figures(_scores(rows), scoring("lmms-eval", "mmstar").aggregate)["m_acc"]
    assert got == pytest.approx(EXPECTED["aggregates"]["lmms-eval"]["mmstar"])
    assert got != pytest.approx(0.5)  # the plain mean over questions


def test_mvbench_leaves_empty_answers_out_as_lmms_eval():
    rows = [(1.0, True, "t"), (0.0, False, "t"), (0.0, False, "t"), (0.0, True, "t"), (1.0, True, "t")]
    got = aggregate_figures(_scores(rows), scoring("lmms-eval", "mvbench").aggregate)["m_acc"]
    assert got == pytest.approx(EXPECTED["aggregates"]["lmms-eval"]["mvbench"])
    assert got == pytest.approx(2 / 3)


def test_lmms_eval_mvbench_counts_only_empty_output_as_unanswered():
    rules = scoring("lmms-eval", "mvbench")
    it = item(cases()["mvbench"][0]["item"], "mvbench")
    assert not rules.parsed(rules.answer("", it, "generate"))
    assert rules.parsed(rules.answer("   ", it, "generate"))  # whitespace is an answer upstream (and wrong)


# ------------------------------------------------------------------------------------------------- registry


def test_default_profile_is_caprls_own_scoring():
    bench = get_benchmark("chartqa")
    rules = scoring("caprl", "chartqa")
    it = item({"answers": ["17"]}, "chartqa")
    for raw in ("Answer: 17", "**17**", "17\n\nExplanation"):
        assert rules.answer(raw, it, "generate") == bench.answer(raw, it, "generate") == "17"
        assert rules.score("17", it) == bench.metric.score("17", it)


def test_profile_not_covering_a_benchmark_names_those_that_do():
    with pytest.raises(ProfileError, match=r"'caprl-paper' does not cover benchmark 'mvbench'.*caprl, lmms-eval"):
        scoring("caprl-paper", "mvbench")
    assert covering("shapes-image") == ["caprl"]
    with pytest.raises(ProfileError, match="unknown scoring profile 'lmms'"):
        scoring("lmms", "mmstar")


def test_config_refuses_an_unknown_profile():
    with pytest.raises(ValueError, match="unknown scoring profile"):
        PrismConfig(benchmarks=["mmstar"], out="o", captioner="c", profile="nope")


def test_caprl_paper_reads_with_capRLs_prompt_and_sampling_under_its_own_key():
    from caprl.eval.read import read_config

    bench = get_benchmark("chartqa")
    base = dict(benchmarks=["chartqa"], out="o", captioner="c", reader="r")
    default, paper = PrismConfig(**base), PrismConfig(**base, profile="caprl-paper")
    assert read_config(bench, default) == read_config(bench, PrismConfig(**base, profile="lmms-eval"))
    assert read_config(bench, paper) != read_config(bench, default)
    reading = scoring("caprl-paper", "chartqa").reading
    assert reading is not None and (reading.temperature, reading.max_new_tokens) == (1.0, 2048)
    text = reading.messages("Two bars.", item({"question": "How many?", "answers": ["2"]}, "chartqa"))[0]["content"]
    assert text.startswith(
        "Here is a detailed caption of an image: Two bars.. Please answer the question based on the caption."
    )
    assert "<answer>" in text and "\\boxed{" in text and "How many?" in text


def test_caprl_paper_read_stage_samples_with_its_settings():
    from caprl.eval.read import ReadTask, _read_chunk

    class Recorder:
        name = "rec"

        def __init__(self):
            self.calls = []

        def generate(self, prompts, *, max_new_tokens=10, temperature=0.0, seed=None, seeds=None):
            self.calls.append((max_new_tokens, temperature, seeds, prompts))
            return ["<think>x</think><answer>\\boxed{B}</answer>"] * len(prompts)

    bench = get_benchmark("mmstar")
    cfg = PrismConfig(benchmarks=["mmstar"], out="o", captioner="c", reader="r", profile="caprl-paper")
    it = item({"question": "Which?", "options": ["x", "y"], "gold": 1}, "mmstar")
    model = Recorder()
    records = _read_chunk(bench, [ReadTask(it, "cap", "cid", "c", 0)], cfg, model, "k")
    ((max_new, temp, seeds, prompts),) = model.calls
    assert (max_new, temp) == (2048, 1.0) and seeds is not None and len(seeds) == 1
    assert records[0].mode == "generate"  # an MCQ is generated, not letter-scored, under this profile
    assert "A. x\nB. y" in prompts[0][0]["content"]


# ---------------------------------------------------------------------------------------------- live upstream


@pytest.mark.skipif(not os.environ.get("CAPRL_UPSTREAM_GIT"), reason="set CAPRL_UPSTREAM_GIT to rerun upstream code")
def test_fixtures_match_upstream_code_live():
    dirs = dict(kv.split("=", 1) for kv in os.environ["CAPRL_UPSTREAM_GIT"].split(","))
    sys.path.insert(0, str(Path(__file__).parent / "upstream"))
    import regenerate

    live = regenerate.expected(dirs["lmms"], dirs["vlmevalkit"], dirs["caprl"])
    assert json.loads(json.dumps(live)) == EXPECTED


# ------------------------------------------------------------------------------------------------- end to end


def test_rescoring_the_same_reads_with_another_profile(tmp_path):
    """One caption and read pass; the score stage then runs under caprl's profile and lmms-eval's on the same
    reads (no reader), the report names the profile, and caprl-paper (its own prompt) needs its own reads."""
    from PIL import Image

    from caprl.eval import DataPaths, StageError, run_prism

    root = tmp_path / "chartqa" / "test"
    (root / "png").mkdir(parents=True)
    rows = [{"imgname": f"{i}.png", "query": f"Value {i}?", "label": "17"} for i in range(3)]
    (root / "test_human.json").write_text(json.dumps(rows))
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / "png" / f"{i}.png")

    class Captioner:
        name = "cap"

        def caption(self, requests, settings=None):
            return [["A bar chart." for _ in range(settings.n)] for _ in requests]

    class Reader:
        name = "reader"

        def generate(self, prompts, **kw):
            said = ["Answer: 17", "**17**", "17"]
            return [said[int(p[-1]["content"].split("Value ")[1][0])] for p in prompts]

    paths = DataPaths(data={"chartqa": str(tmp_path / "chartqa")}, env={})
    cfg = PrismConfig(benchmarks=["chartqa"], out=tmp_path / "out", captioner="cap", reader="reader", k=1,
                      baseline=False, bootstrap=100)  # fmt: skip
    first = run_prism(cfg, captioner=Captioner(), reader=Reader(), paths=paths)
    assert first["benchmarks"][0]["m_acc"] == 1.0 and first["benchmarks"][0]["profile"] == "caprl"

    lmms = run_prism(cfg.model_copy(update={"stage": "score", "profile": "lmms-eval"}), paths=paths)
    [bench] = lmms["benchmarks"]
    assert bench["profile"] == "lmms-eval" and bench["m_acc"] == pytest.approx(1 / 3)  # only the bare "17"
    assert "scoring profile: `lmms-eval`" in (tmp_path / "out" / "report.md").read_text()
    assert "scoring profile <b>lmms-eval</b>" in (tmp_path / "out" / "report.html").read_text()

    with pytest.raises(StageError, match="read stage"):
        run_prism(cfg.model_copy(update={"stage": "score", "profile": "caprl-paper"}), paths=paths)
