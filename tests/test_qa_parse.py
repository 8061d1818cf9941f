"""Tolerant parsing of generated MCQs, the generation/answer prompts, and the cheap pre-checks."""

from __future__ import annotations

import json

import pytest

from caprl.qa.checks import find_duplicates, normalise, option_problem
from caprl.qa.parse import parse_mcqs
from caprl.qa.prompts import answer_prompt, generation_prompt
from caprl.reward.extract import extract_choice
from caprl.schema import MCQ

ROWS = [
    {"question": "What colour is the circle?", "options": ["red", "blue", "green", "black"], "answer": "B"},
    {"question": "How many squares are there?", "options": ["1", "2", "3", "4"], "answer": "C"},
]


def _golds(result):
    return [(q.question, q.gold_text) for q in result.mcqs]


EXPECTED = [("What colour is the circle?", "blue"), ("How many squares are there?", "3")]


@pytest.mark.parametrize(
    ("text", "repair"),
    [
        (json.dumps({"questions": ROWS}), None),
        ("```json\n" + json.dumps({"questions": ROWS}, indent=2) + "\n```", "code fence"),
        ("Sure, here they are:\n" + json.dumps({"questions": ROWS}) + "\nEnjoy!", "text around the JSON"),
        (json.dumps(ROWS), "bare list"),
        (json.dumps({"mcqs": ROWS}), "other key names"),
        (json.dumps({"questions": ROWS}).replace("]}", ",]}").replace("}]", "},]"), "trailing commas or curly quotes"),
        (str({"questions": ROWS}), "python-style literal"),
    ],
)
def test_parse_accepts_near_misses(text, repair):
    result = parse_mcqs(text)
    assert _golds(result) == EXPECTED
    assert not result.problems
    if repair is None:
        assert result.repairs == []
    else:
        assert repair in result.repairs


def test_parse_other_shapes_of_options_and_answers():
    rows = [
        {"q": "What colour is the circle?", "choices": ["A) red", "B) blue", "C) green"], "correct_answer": "(B)"},
        {"question": "How many squares are there?", "options": {"A": "1", "B": "2", "C": "3"}, "answer": "3"},
        {"question": "Where is the star?", "options": ["A. left", "B. right", "C. top"], "answer": "C. top"},
        {"question": "Which shape is red?", "options": ["circle", "star", "square"], "answer_index": 0},
    ]
    result = parse_mcqs(json.dumps({"questions": rows}))
    assert [q.gold_text for q in result.mcqs] == ["blue", "3", "top", "circle"]
    assert {"labelled options", "options as an object"} <= set(result.repairs)


def test_parse_rejects_bad_questions_with_reasons_and_keeps_the_rest():
    rows = [
        ROWS[0],
        {"question": "No answer?", "options": ["a", "b", "c"]},
        {"question": "Out of range?", "options": ["a", "b", "c"], "answer": "E"},
        {"question": "Duplicates?", "options": ["red", "Red", "blue"], "answer": "A"},
        {"question": "Numeric?", "options": ["a", "b", "c"], "answer": 2},
        {"options": ["a", "b"], "answer": "A"},
        ROWS[1],
    ]
    result = parse_mcqs(json.dumps({"questions": rows}))
    assert _golds(result) == EXPECTED
    assert result.found == 7
    problems = "\n".join(result.problems)
    for n, words in [(2, "no answer"), (3, "gold answer"), (4, "duplicate"), (5, "numeric"), (6, "no question")]:
        assert f"question {n}:" in problems and words in problems.lower()


def test_parse_keeps_complete_questions_of_a_cut_off_reply_and_at_most_k():
    full = json.dumps({"questions": [*ROWS, ROWS[0] | {"question": "Third?"}]})
    cut = full[: full.index("Third?") + 3]  # the token limit hit inside the third question
    result = parse_mcqs(cut)
    assert _golds(result) == EXPECTED
    assert "incomplete JSON: kept the complete questions" in result.repairs
    limited = parse_mcqs(full, k=2)
    assert len(limited.mcqs) == 2 and "more than the 2 asked for" in limited.problems[0]


def test_parse_plain_text_questions():
    text = (
        "1. What colour is the circle?\nA) red\nB) blue\nC) green\nD) black\nAnswer: B\n\n"
        "2. How many squares are there?\n(A) 1\n(B) 2\n(C) 3\nAnswer: C"
    )
    result = parse_mcqs(text)
    assert _golds(result) == [*EXPECTED[:1], ("How many squares are there?", "3")]
    assert "plain-text questions" in result.repairs


@pytest.mark.parametrize("text", ["", "I like this picture a lot.", "<think>hmm</think>", '{"caption": "a circle"}'])
def test_unparseable_replies_give_no_questions_and_say_why(text):
    result = parse_mcqs(text)
    assert result.mcqs == [] and result.problems


def test_prompts_ask_for_strict_json_and_answer_letters():
    p = generation_prompt(5, "video", n_options=4)
    assert "Write 5 multiple-choice questions about this video" in p and '"questions"' in p and "happens" in p
    with pytest.raises(ValueError):
        generation_prompt(0)
    a = answer_prompt("What colour?", ["red", "blue", "green"])
    assert a.endswith("A) red\nB) blue\nC) green") and "letter" in a
    assert extract_choice("B", ["red", "blue", "green"]) == "B"


def test_option_checks_and_duplicates():
    q = MCQ(question="What colour is the circle?", options=["red", "blue", "green"], gold=0)
    assert option_problem(q) is None
    assert option_problem(q.model_copy(update={"options": ["red", "blue"]})) == "too_few_options"
    assert option_problem(MCQ(question="x?", options=["Red.", "red!", "blue"], gold=0)) == "duplicate_options"
    assert option_problem(q.model_copy(update={"gold": 5})) == "gold_missing"
    assert normalise("  What  COLOUR, is it? ") == "what colour is it"

    def mcq(question: str, gold: int = 0) -> MCQ:
        return MCQ(question=question, options=["red", "blue", "green"], gold=gold)

    mcqs = [
        q,
        mcq("what colour is the circle"),  # exact after normalising
        mcq("What is the colour of the circles?"),  # other filler words, a plural: near
        mcq("What color is the circle?"),  # other spelling: near
        mcq("What colour is the circle?", gold=1),  # the same text is a duplicate, whatever its answer
        mcq("What colour is the small circle?"),  # one more word: another question
        mcq("What colour is the square?"),  # another word
        mcq("Is the circle above the square?"),
        mcq("Is the square above the circle?"),  # the same words in another order: another question
        mcq("How many circles are left of square 24?"),
        mcq("How many circles are left of square 42?"),  # numbers must match exactly
        mcq("What colour is the circel?", gold=2),  # a typo, but another answer: kept
    ]
    assert find_duplicates(mcqs) == {
        1: ("duplicate", 0),
        2: ("near_duplicate", 0),
        3: ("near_duplicate", 0),
        4: ("duplicate", 0),
    }
    assert find_duplicates(mcqs, near_duplicate=1.01) == {1: ("duplicate", 0), 4: ("duplicate", 0)}
    assert find_duplicates([mcq("What colour is the circle?"), mcq("What colour is the circel?")]) == {
        1: ("near_duplicate", 0)
    }
