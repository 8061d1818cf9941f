"""Prism metrics against worked examples (and ANLS against the reference ``anls`` package)."""

from __future__ import annotations

import random

import pytest

from caprl.eval.benchmarks import get_benchmark
from caprl.eval.extract import short_answer, span
from caprl.eval.metrics.anls import anls, anls_package
from caprl.eval.metrics.chartqapro import chartqapro_item_score, chartqapro_score
from caprl.eval.metrics.grounding import grounding_scores, iou
from caprl.eval.metrics.judge import MMBENCH_VIDEO, MMVU_OPEN_ENDED
from caprl.eval.metrics.mcq import mcq_accuracy
from caprl.eval.metrics.relaxed import relaxed_accuracy, relaxed_correct
from caprl.eval.stats import cluster_bootstrap
from caprl.eval.types import EvalItem
from caprl.schema import ImageMedia

IMG = ImageMedia(path="x.png")

# ---------------------------------------------------------------------------------------------- MCQ accuracy


def mcq(options=("red", "blue", "green"), gold=1) -> EvalItem:
    return EvalItem(id="q", media_id="m", media=IMG, question="Which colour?", options=list(options), gold=gold)


@pytest.mark.parametrize(
    ("raw", "mode", "expected"),
    [
        ("B", "score", "B"),
        ("The answer is (B).", "generate", "B"),
        ("I think it is the blue one", "generate", "B"),
        ("C) green", "generate", "C"),
        ("I cannot tell from the description.", "generate", None),  # unparseable: wrong, never guessed
        ("", "generate", None),
        ("D", "generate", None),  # not an option
    ],
)
def test_mcq_extraction_and_accuracy(raw, mode, expected):
    bench = get_benchmark("mmstar")
    item = mcq()
    chosen = bench.answer(raw, item, mode)
    assert chosen == expected
    assert bench.metric.score(chosen, item)["score"] == float(expected == "B")
    assert mcq_accuracy(None, "B") == 0.0


# ------------------------------------------------------------------------------------------ relaxed accuracy

RELAXED = [
    # prediction, gold, correct, why
    ("10.4", "10", True, "4% off: within 5%"),
    ("10.6", "10", False, "6% off"),
    ("9.5", "10", True, "exactly 5% below"),
    ("-5", "-5.2", True, "negatives: relative to |gold|"),
    ("5", "-5", False, "sign matters"),
    ("45%", "0.45", True, "a trailing % divides by 100"),
    ("0.45", "45%", True, "on either side"),
    ("45", "45%", False, "45 vs 0.45 (the official rule)"),
    ("45%", "45%", True, "both percentages"),
    ("1,000", "1000", False, "thousands separators are not numbers: string match"),
    ("1,000", "1,000", True, "the same string"),
    ("2019", "2020", True, "years are plain numbers to ChartQA (0.05% off)"),
    ("0", "0", True, "gold 0: exact match"),
    ("0.0", "0", False, "gold 0: exact match, so 0.0 is wrong"),
    ("Yes", "yes", True, "text: case-insensitive exact match"),
    ("yes.", "yes", False, "text: exact (extraction strips periods before)"),
    (" 12 ", "12", True, "surrounding spaces"),
    ("[1, 2]", "[1, 2]", True, "lists: exact string"),
]


@pytest.mark.parametrize(("pred", "gold", "correct", "why"), RELAXED)
def test_relaxed_accuracy_edge_cases(pred, gold, correct, why):
    assert relaxed_correct(pred, gold) is correct, why


def test_relaxed_accuracy_any_gold():
    assert relaxed_accuracy("12", ["11", "12"]) == 1.0
    assert relaxed_accuracy("13", ["11", "12"]) == 0.0


# ------------------------------------------------------------------------------------------------------ ANLS


# prediction, golds, lmms-eval/VLMEvalKit ANLS (InfoVQA), `anls` package ANLS (ChartQAPro): each value computed by
# running the official code (lmms_eval/api/metrics.py `anls`; anls.anls_score) on the inputs.
ANLS_CASES = [
    ("ac", ["ab"], 0.5, 0.0),  # NL = 0.5 exactly: lmms-eval keeps 1 - NL, the package gives 0
    ("26", ["25"], 0.5, 0.0),
    ("abcd", ["abef"], 0.5, 0.0),
    ("Tiger", ["tiger"], 1.0, 1.0),
    ("tigers", ["tiger"], 1 - 1 / 6, 1 - 1 / 6),
    ("cat", ["tiger"], 0.0, 0.0),
    ("  New   York ", ["new york"], 1.0, 1.0),  # whitespace runs collapse
    ("abcde", ["abcxy", "abcdf"], 0.8, 0.8),  # the best gold
    ("1,234", ["1234"], 0.8, 0.8),
    ("  ab", ["ac"], 0.75, 0.0),  # lmms-eval divides by the length as given (4), the package by the normalised one
    ("a b", ["a  c"], 0.75, 2 / 3),
    ("", ["x"], 0.0, 0.0),
    ("", [""], 1.0, 1.0),
    ("straße", ["strasse"], 5 / 7, 5 / 7),
    ("yes", ["Yes", "no"], 1.0, 1.0),
]


@pytest.mark.parametrize(("pred", "golds", "official", "package"), ANLS_CASES)
def test_anls_against_the_official_formulas(pred, golds, official, package):
    assert anls(pred, golds) == pytest.approx(official)
    assert anls_package(pred, golds) == pytest.approx(package)


def test_anls_package_variant_agrees_with_the_reference_package():
    from anls import anls_score

    rng = random.Random(0)
    alphabet = "abcAB 1.%"
    word = lambda: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))  # noqa: E731
    differ = 0
    for _ in range(1200):
        pred, golds = word(), [word() for _ in range(rng.randint(1, 3))]
        reference = anls_score(pred, golds, threshold=0.5)
        assert anls_package(pred, golds) == pytest.approx(reference, abs=1e-12), (pred, golds)
        differ += anls(pred, golds) != pytest.approx(reference, abs=1e-12)
    assert differ > 50  # the two variants really differ on short strings (2,162 of 20,000 pairs like these)


def test_benchmarks_use_their_own_anls():
    item = EvalItem(id="i", media_id="m", media=IMG, question="Q?", answers=["25"])
    assert get_benchmark("infovqa").metric.score("26", item)["score"] == 0.5
    assert chartqapro_item_score("ac", ["ab"], "Factoid", ["NO"]) == 0.0


# ------------------------------------------------------------------------------------------------ ChartQAPro

CHARTQAPRO = [
    # gold, prediction, year flags, score, why
    ("2019", "2019", ["YES"], 1.0, "a year: exact"),
    ("2019", "2020", ["YES"], 0.0, "a year: no tolerance"),
    ("2019", "2020", ["NO"], 1.0, "not flagged as a year: a number within 5%"),
    ("45%", "45", ["NO"], 1.0, "percent signs are dropped on both sides"),
    ("45%", "47%", ["NO"], 1.0, "4.4% off"),
    ("45%", "48", ["NO"], 0.0, "6.7% off"),
    ("-3.5", "-3.6", ["NO"], 1.0, "negative, 2.9% off"),
    ("-3.5", "3.5", ["NO"], 0.0, "wrong sign"),
    ("0", "0", ["NO"], 1.0, "zero gold needs zero"),
    ("0", "0.01", ["NO"], 0.0, "zero gold needs zero"),
    ("1,234", "1234", ["NO"], 0.8, "commas: not a number, ANLS 1 - 1/5"),
    ("Canada", "canada", ["NO"], 1.0, "text: ANLS, case-insensitive"),
    ("United States", "United State", ["NO"], 1 - 1 / 13, "text: ANLS partial credit"),
    ("Canada", "Brazil", ["NO"], 0.0, "text: too far"),
    ("['Canada', 'Mexico']", "['Canada', 'Mexico']", ["NO"], 1.0, "lists: element by element"),
    ("['Canada', 'Mexico']", "['Canada']", ["NO"], 0.5, "lists: a missing element scores 0"),
    ("['Canada']", "['Canada', 'Mexico']", ["NO"], 0.5, "lists: an extra element scores 0"),
    ("[Canada, Mexico]", "['Canada', 'Mexico']", ["NO"], 1.0, "unquoted gold lists are quoted first"),
    ("[2019, 2020]", "['2019', '2021']", ["YES"], 0.5, "one year flag covers every element"),
    ("[10, 20]", "['10.2', '25']", ["NO"], 0.5, "numbers element-wise"),
]


@pytest.mark.parametrize(("gold", "pred", "flags", "expected", "why"), CHARTQAPRO)
def test_chartqapro_edge_cases(gold, pred, flags, expected, why):
    assert chartqapro_score(gold, pred, flags) == pytest.approx(expected), why


def test_chartqapro_item_rules():
    # Conversational: the last turn's gold answer and the last turn's year flag.
    assert chartqapro_item_score("2020", ["5", "2020"], "Conversational", ["NO", "YES"]) == 1.0
    assert chartqapro_item_score("2021", ["5", "2020"], "Conversational", ["NO", "YES"]) == 0.0
    # Surrounding periods are stripped from gold and prediction.
    assert chartqapro_item_score("Canada.", ["Canada"], "Factoid", ["NO"]) == 1.0
    # Multiple choice as the released script scores it (ANLS), and with exact matching switched on.
    assert chartqapro_item_score("Option b", ["option a"], "Multi Choice", ["NO"]) == pytest.approx(1 - 1 / 8)
    assert chartqapro_item_score("Option b", ["option a"], "Multi Choice", ["NO"], exact_choice_types=True) == 0.0


# -------------------------------------------------------------------------------------------------- TimeLens


def test_iou_and_recall():
    # (pred, gold=(10, 20), IoU by TimeLens's official iou(gt, pred))
    for pred, expected in [((12.0, 18.0), 0.6), ((18.0, 12.0), 0.0), ((5.0, 10.0), 0.0), ((0.0, 30.0), 1 / 3),
                           ((20.0, 25.0), 0.0), ((15.0, 15.0), 0.0), ((8.0, 14.0), 1 / 3)]:  # fmt: skip
        assert iou(pred, (10.0, 20.0)) == pytest.approx(expected), pred
    assert iou((3.0, 3.0), (3.0, 3.0)) == 0.0  # an empty union: 0, not a division by zero
    s = grounding_scores((10.0, 20.0), (12.0, 20.0))  # IoU 0.8
    assert s == {"miou": pytest.approx(0.8), "r1@0.3": 1.0, "r1@0.5": 1.0, "r1@0.7": 1.0}
    s = grounding_scores((10.0, 20.0), (15.0, 25.0))  # IoU 1/3
    assert (s["r1@0.3"], s["r1@0.5"], s["r1@0.7"]) == (1.0, 0.0, 0.0)
    assert grounding_scores(None, (1.0, 2.0)) == {"miou": 0.0, "r1@0.3": 0.0, "r1@0.5": 0.0, "r1@0.7": 0.0}


# answer -> the predicted span: TimeLens's extract_time (timelens/utils.py) run on the answer, first pair, rounded
# as its eval_dataloader.py rounds (UNIT 1.0, Python's round).
SPANS = [
    ("12.5 - 20", (12.0, 20.0)),
    ("[00:12 - 00:20]", (12.0, 20.0)),
    ("It happens from 1:05 to 1:10.", (65.0, 70.0)),
    ("between 3s and 7s", None),  # "3s" is not a number to the official reader
    ("20 - 10", (20.0, 10.0)),  # reversed: kept (and scored 0)
    ("1:01:15 - 1:01:20", (3675.0, 3680.0)),
    ("at 5 seconds", None),
    ("I do not know", None),
    ("The event happens in 12.5 - 18.5 seconds.", (12.0, 18.0)),  # halves round to even
    ("Starting time: 0.8 seconds. Ending time: 1.1 seconds", (1.0, 1.0)),
    ("The start time for this event is 0 seconds, and the end time is 12 seconds.", (0.0, 12.0)),
    ("from 10 to 15.5", (10.0, 16.0)),
    ("00:05, 00:09 and 00:20", (5.0, 9.0)),
    ("2.5 - 3.5", (2.0, 4.0)),
    ("events at 1:00-1:30 and 2:00-2:30", (60.0, 90.0)),
    ("14.49 - 14.51", (14.0, 15.0)),
    ("In 5 - 9, then 10 - 12", (5.0, 9.0)),
    ("at 0:07 and 0:12.5", (7.0, 12.0)),
    ("1:75 - 2:00", (135.0, 120.0)),
]


@pytest.mark.parametrize(("text", "expected"), SPANS)
def test_span_extraction_as_timelens_reads_it(text, expected):
    assert span(text) == expected


def test_timelens_metric_from_raw_answer():
    bench = get_benchmark("timelens")
    item = EvalItem(id="t", media_id="v", media=IMG, question="Query: x", span=(12.0, 20.0))
    pred = bench.answer("The moment is at [00:12 - 00:18].", item, "generate")
    scores = bench.metric.score(pred, item)
    assert scores["score"] == pytest.approx(0.75) and scores["r1@0.7"] == 1.0
    assert bench.metric.score(bench.answer("no idea", item, "generate"), item)["score"] == 0.0
    assert bench.metric.score(bench.answer("18 - 12", item, "generate"), item)["score"] == 0.0  # reversed


# ---------------------------------------------------------------------------------------- open answers, judge


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("Answer: Canada\nBecause the description says so.", "Canada"),
        ("**Yes**", "Yes"),
        ("<think>hmm, the chart</think> 7", "7"),
        ("['a', 'b']", "['a', 'b']"),
        ("", None),
        ("   \n ", None),
    ],
)
def test_short_answer(text, expected):
    assert short_answer(text) == expected


def test_open_benchmark_scores_extracted_answer():
    bench = get_benchmark("chartqa")
    item = EvalItem(id="c", media_id="m", media=IMG, question="How many?", answers=["10"])
    assert bench.metric.score(bench.answer("The answer is 10.3.", item, "generate"), item)["score"] == 1.0
    infovqa = get_benchmark("infovqa")
    item = EvalItem(id="i", media_id="m", media=IMG, question="Who?", answers=["tigers", "tiger"])
    assert infovqa.metric.score(infovqa.answer("Tiger.", item, "generate"), item)["score"] == 1.0


@pytest.mark.parametrize(
    ("spec", "reply", "expected"),
    [
        (MMVU_OPEN_ENDED, '{"extracted_answer": "Dolly zoom", "correct": true}', 1.0),
        (MMVU_OPEN_ENDED, '```json\n{"extracted_answer": "Pan", "correct": false}\n```', 0.0),
        (MMVU_OPEN_ENDED, 'The answer is right. {"correct": "yes"}', None),  # not a boolean
        (MMVU_OPEN_ENDED, "It looks right to me", None),
        (MMBENCH_VIDEO, "3", 3.0),
        (MMBENCH_VIDEO, "<think>close</think> 2", 2.0),
        (MMBENCH_VIDEO, "Score: 2", None),  # VLMEvalKit reads the whole reply as one integer
        (MMBENCH_VIDEO, "4", None),
    ],
)
def test_judge_reply_parsing(spec, reply, expected):
    assert spec.parse(reply) == expected


# ------------------------------------------------------------------------------------------------- bootstrap


def test_cluster_bootstrap_keeps_clusters_together():
    # Two media with 50 questions each, all right on one and all wrong on the other: resampling media (not
    # questions) gives an interval spanning 0..1, where an iid bootstrap would give about 0.4..0.6.
    values = [1.0] * 50 + [0.0] * 50
    clusters = ["a"] * 50 + ["b"] * 50
    lo, hi = cluster_bootstrap(values, clusters, n_boot=2000, seed=0)
    assert lo == 0.0 and hi == 1.0
    lo_iid, hi_iid = cluster_bootstrap(values, [str(i) for i in range(100)], n_boot=2000, seed=0)
    assert 0.35 < lo_iid < 0.5 < hi_iid < 0.65


def test_cluster_bootstrap_is_seeded_and_covers_the_mean():
    rng = random.Random(1)
    values = [float(rng.random() < 0.7) for _ in range(300)]
    clusters = [str(i // 3) for i in range(300)]
    a = cluster_bootstrap(values, clusters, seed=3)
    assert a == cluster_bootstrap(values, clusters, seed=3)
    assert a[0] < sum(values) / len(values) < a[1]
    assert cluster_bootstrap([1.0], ["x"]) is None
    assert cluster_bootstrap([0.5, 0.5, 0.5], ["x", "y", "z"]) == (0.5, 0.5)
