"""Answer extraction on tricky reader outputs (issue 23): colon after "answer is", "C, because", ``\\boxed{}``,
lower-case option letters (and English words that are not letters), empty outputs in score mode.

Each case goes through ``Benchmark.answer`` and the metric, as ``caprl eval --stage score`` does, or through the
extractor the reward uses."""

from __future__ import annotations

import pytest

from caprl.eval.benchmarks import get_benchmark
from caprl.eval.extract import short_answer
from caprl.eval.types import EvalItem
from caprl.reward.extract import extract_choice
from caprl.schema import ImageMedia

IMG = ImageMedia(path="x.png")
OPTS = ["red", "blue", "green", "yellow"]
# No option text is in the sentences below, so a read letter can only come from the letter rules.
SHAPES = ["square", "triangle", "star", "hexagon"]


def mcq(gold: int = 1) -> EvalItem:
    return EvalItem(id="q", media_id="m", media=IMG, question="Which colour?", options=list(OPTS), gold=gold)


def open_item(answer: str) -> EvalItem:
    return EvalItem(id="o", media_id="m", media=IMG, question="How many?", answers=[answer])


# ---------------------------------------------------------------------------------------------- open answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is: 3", "3"),
        ("The answer is : 3", "3"),
        ("Final answer is：3.", "3"),
        ("The answer is 3", "3"),
        (r"The answer is \boxed{3}.", "3"),
        (r"So we get \boxed{12}", "12"),
        (r"\boxed{\text{Canada}}", "Canada"),
        (r"First \boxed{2}, then corrected: \boxed{3}", "3"),  # the last box is the conclusion
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces stay whole
    ],
)
def test_short_answer_lead_in_and_boxed(text, expected):
    assert short_answer(text) == expected


def test_open_answer_after_colon_scores():
    bench = get_benchmark("chartqa")
    item = open_item("3")
    for raw in ("The answer is: 3", "The answer is 3", r"\boxed{3}"):
        assert bench.metric.score(bench.answer(raw, item, "generate"), item)["score"] == 1.0, raw


# ------------------------------------------------------------------------------------------ letter + comma


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("C, because the caption says the circle is green.", "C"),
        ("C, because the shape has six sides.", "C"),
        ("**C**, because", "C"),
        ("A, B and C are all possible.", None),  # a list of letters is no answer
    ],
)
def test_letter_then_comma(text, expected):
    assert extract_choice(text, SHAPES) == expected


# ------------------------------------------------------------------------------------------------- boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{B}", "B"),
        (r"The answer is \boxed{B}.", "B"),
        (r"\boxed{(C)}", "C"),
        (r"\boxed{\text{D}}", "D"),
        (r"Not A. \boxed{B}", "B"),
        (r"\boxed{triangle}", "B"),  # the option text, boxed
        (r"\boxed{b}", "B"),
        (r"\boxed{Z}", None),  # not an option
    ],
)
def test_boxed_letter(text, expected):
    assert extract_choice(text, SHAPES) == expected


# -------------------------------------------------------------------------------------- lower-case letters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("b", "B"),
        ("b.", "B"),
        ("b)", "B"),
        ("(b)", "B"),
        ("**b**", "B"),
        ("b) because of the caption", "B"),
        ("(b) because of the caption", "B"),
        ("b. because of the caption", "B"),
        ("answer: b", "B"),
        ("Answer: (b)", "B"),
        ("The answer is b.", "B"),
        ("the answer is (c)", "C"),
        ("a", "A"),  # the whole output is one letter: that is the answer
        (": b", "B"),  # the continuation of a prompt ending in "The answer is"
        (" c.", "C"),
        ("d", "D"),
        ("e", None),  # not one of the four letters
    ],
)
def test_lower_case_letter_read(text, expected):
    assert extract_choice(text, SHAPES) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a big circle",
        "A big circle.",
        "a circle on the left",
        "The answer is a circle.",
        "answer: a circle",
        "The answer is a bit unclear from the caption.",
        "It is a circle",
        "I think it is a circle, because",
        "a, the circle",
        "i.e. nothing matches",
        "e.g. a circle",
    ],
)
def test_english_words_are_not_letters(text):
    assert extract_choice(text, SHAPES) is None


def test_article_sentence_reads_option_text_not_a():
    assert extract_choice("a triangle", SHAPES) == "B"
    assert extract_choice("The answer is a triangle.", SHAPES) == "B"


# ----------------------------------------------------------------------------------- score mode, empty output


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("   ", None), ("\n", None), ("AB", None), ("B", "B")])
def test_score_mode_reads_one_letter(raw, expected):
    bench = get_benchmark("mmstar")
    item = mcq()
    chosen = bench.answer(raw, item, "score")
    assert chosen == expected
    assert bench.metric.score(chosen, item)["score"] == float(expected == "B")


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_lower_case_and_boxed_through_benchmark(mode):
    bench = get_benchmark("mmstar")
    item = mcq()
    if mode == "generate":
        for raw in ("b", "(b) blue", r"\boxed{B}", "B, because it is blue", "answer: b"):
            assert bench.answer(raw, item, mode) == "B", raw
    else:
        assert bench.answer("", item, mode) is None
