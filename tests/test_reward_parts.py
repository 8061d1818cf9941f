"""Pure parts of the reward: answer extraction, option shuffling, question sampling, extra terms."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caprl.reward.extract import extract_choice
from caprl.reward.options import (
    CAPRL_UNANSWERABLE,
    DEFAULT_UNANSWERABLE,
    check_unanswerable_letter,
    sample_questions,
    shuffle_options,
)
from caprl.reward.terms import length_term, timestamp_format_term, timestamp_stats
from caprl.schema import LETTERS, MCQ

OPTS = ["red", "blue", "green", "dark red"]

# (reader output, expected letter or None) — outputs seen from small instruction-tuned readers.
EXTRACTION_TABLE = [
    ("B", "B"),
    ("B.", "B"),
    ("(C)", "C"),
    ("**D**", "D"),
    ("[A]", "A"),
    ("C) green", "C"),
    ("C. green", "C"),
    ("(B) blue", "B"),
    ("The answer is (B).", "B"),
    ("The answer is B", "B"),
    ("Answer: C", "C"),
    ("answer: C", "C"),
    ("Answer:C", "C"),
    ("The correct option is A because the caption says so.", "A"),
    ("I choose option C", "C"),
    ("I think it is B", "B"),
    ("It's D", "D"),
    ("Based on the caption, the answer is **(A)** red.", "A"),
    ("Let me think. The caption mentions a blue circle. So the answer is B.", "B"),
    ("<think>It could be A or C. The caption says green.</think> C", "C"),
    ("I think the circle is blue", "B"),
    ("blue", "B"),
    ("Blue.", "B"),
    ("dark red", "D"),
    ("The shape is dark red.", "D"),
    ("Option B: blue", "B"),
    ("I cannot tell from the caption.", None),
    ("It is either red or blue.", None),
    # "a" is an article, not a label; the one option text mentioned is "red" (not "dark red").
    ("The answer is a red circle", "A"),
    ("In my view, B", "B"),
    ("", None),
    ("   ", None),
    ("E", None),  # not one of the four letters
    ("Answer: F", None),
    ("I", None),  # the pronoun, the reference's first-capital-letter parse reads it as option I
]


@pytest.mark.parametrize("text,expected", EXTRACTION_TABLE)
def test_extraction_table(text, expected):
    assert extract_choice(text, OPTS) == expected


def test_extraction_never_takes_first_capital():
    nine = [f"o{i}" for i in range(9)]  # with nine options "I" is a valid letter
    assert extract_choice("I think the answer is C", nine) == "C"
    assert extract_choice("I am not sure", nine) is None


mcqs = st.builds(
    lambda n, gold: MCQ(question="q?", options=[f"opt{i}" for i in range(n)], gold=gold % n),
    st.integers(2, 25),
    st.integers(0, 100),
)


@given(mcqs, st.integers(0, 2**32 - 1), st.booleans())
def test_shuffle_is_a_permutation_with_gold_tracked(mcq, seed, unanswerable):
    s = shuffle_options(mcq, random.Random(seed), unanswerable=DEFAULT_UNANSWERABLE if unanswerable else None)
    original = [i for i in s.order if i is not None]
    assert sorted(original) == list(range(len(mcq.options)))
    assert [mcq.options[i] for i in original] == [o for o, i in zip(s.options, s.order, strict=True) if i is not None]
    assert s.options[s.gold] == mcq.gold_text
    assert s.order[s.gold] == mcq.gold
    if unanswerable:
        assert s.options[-1] == DEFAULT_UNANSWERABLE and s.order[-1] is None
        assert len(s.options) == len(mcq.options) + 1


def test_shuffle_is_seeded_and_varies():
    mcq = MCQ(question="q", options=list("abcdef"), gold=2)
    a = [shuffle_options(mcq, random.Random(7)).options for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(0)
    seen = {shuffle_options(mcq, rng).gold for _ in range(200)}
    assert seen == set(range(6))  # the gold lands on every letter


def test_unanswerable_cannot_collide():
    mcq = MCQ(question="q", options=["yes", DEFAULT_UNANSWERABLE], gold=0)
    with pytest.raises(ValueError, match="already an option"):
        shuffle_options(mcq, random.Random(0), unanswerable=DEFAULT_UNANSWERABLE)


@pytest.mark.parametrize(
    ("n_options", "letter", "letters"),
    [
        (4, "F", "ABCDF"),  # CapRL's layout: F after A-D
        (5, "F", "ABCDEF"),
        (6, "F", "ABCDEFG"),  # F is a real option: the next letter after the last one (issue 22)
        (7, "F", "ABCDEFGH"),
        (25, "F", LETTERS),
        (4, "C", "ABCDE"),  # a letter inside the options' range: the same rule, never two options under one letter
        (2, "C", "ABC"),
        (2, "Z", "ABZ"),
        (6, None, "ABCDEFG"),
    ],
)
def test_a_taken_unanswerable_letter_moves_after_the_options(n_options, letter, letters):
    mcq = MCQ(question="q", options=[f"option {i}" for i in range(n_options)], gold=n_options - 1)
    for seed in range(5):
        s = shuffle_options(mcq, random.Random(seed), unanswerable=CAPRL_UNANSWERABLE, unanswerable_letter=letter)
        assert s.letters == letters and len(set(s.letters)) == len(s.letters)
        assert s.options[-1] == CAPRL_UNANSWERABLE and s.order[-1] is None
        assert s.options[s.gold] == mcq.gold_text and s.gold_letter != letters[-1]
    check_unanswerable_letter(letter or "F", n_options)  # the server's pre-check agrees: nothing to refuse


def test_no_letter_left_for_the_unanswerable_option():
    mcq = MCQ(question="q", options=[f"option {i}" for i in range(26)], gold=0)
    for letter in ("F", None):
        with pytest.raises(ValueError, match="26 options"):
            shuffle_options(mcq, random.Random(0), unanswerable=CAPRL_UNANSWERABLE, unanswerable_letter=letter)
    with pytest.raises(ValueError, match="no letter is left"):
        check_unanswerable_letter("F", 26)


def test_sample_questions():
    rng = random.Random(1)
    draws = sample_questions(3, 1000, rng)
    assert len(draws) == 1000 and set(draws) == {0, 1, 2}
    assert sample_questions(4, None, rng) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no MCQs"):
        sample_questions(0, 2, rng)
    with pytest.raises(ValueError, match="at least 1"):
        sample_questions(3, 0, rng)


def test_length_term():
    assert length_term(0) == 1.0 and length_term(2048) == 1.0
    assert length_term(2560) == pytest.approx(0.5)
    assert length_term(3072) == 0.0 and length_term(10_000) == 0.0
    with pytest.raises(ValueError):
        length_term(5, full_until=10, zero_at=10)


@pytest.mark.parametrize(
    "caption,validity,coverage,order,score",
    [
        ("no stamps at all", 0, 0, 0, 0.0),
        ("[00:00 - 00:02] a. [00:03] b. [00:05 - 00:06] c.", 1, 1, 1, 1.0),
        ("[00:01] only one", 1, 1 / 3, 1, 0.45 / 3 + 0.25 + 0.30),
        ("[00:05] b. [00:01] a. [00:07] c.", 1, 1, 0, 0.45 + 0.25),
        (
            "[00:75] bad seconds. [00:01 - 00:00] end before start. [00:02] ok",
            1 / 3,
            1 / 3,
            1,
            (0.45 / 3 + 0.25 + 0.30) / 3,
        ),
        ("[1:02 – 1:04] en dash and one-digit minutes", 1, 1 / 3, 1, 0.45 / 3 + 0.25 + 0.30),
    ],
)
def test_timestamp_term(caption, validity, coverage, order, score):
    st_ = timestamp_stats(caption)
    assert (st_.validity, st_.coverage, st_.order) == pytest.approx((validity, coverage, order))
    assert st_.score == pytest.approx(score)
    assert timestamp_format_term(caption) == pytest.approx(score)
