"""Tricky reader outputs per benchmark, for the scoring-profile conformance tests (issue 23).

Each case is an item (options and gold, or gold answers) and outputs a reader may write. The expected score of
every output under every profile that covers the benchmark was computed by the upstream harness's own functions
(``tests/upstream/regenerate.py``) and is stored in ``tests/fixtures/prism/profiles/expected.json``.
"""

from __future__ import annotations

from typing import Any

# Outputs every MCQ benchmark is tried with (gold B unless a case says otherwise).
MCQ_OUTPUTS = [
    "B",
    "b",
    "(B)",
    "B.",
    "B) two",
    "B. two",
    "**B**",
    "The answer is B.",
    "The answer is: B",
    "Answer: B",
    "answer: b",
    "The correct answer is (B).",
    "A or B",
    "Option B is correct because A is wrong",
    "I think it is B",
    "It is a cat",
    "I cannot tell from the caption.",
    "C",
    "c",
    "",
    "   ",
    "\\boxed{B}",
    "<think>A looks right at first</think>B",
    "two",
    "The number is two",
    "B, because the caption says two",
    "A. one\nB. two",
    "Cannot determine the answer",
    "Z",
    "E",
    "BA",
    "</think><answer>\\boxed{B}</answer>",
    "<think>hm</think> <answer> \\boxed{B} </answer>",
    "<think>hm</think><answer>\\boxed{A}</answer>",
    "Best option: C",  # VLMEvalKit's Video-MME prefix list lacks a comma: "Best" keeps its B
    "Best answer: A",
    "The best option is D",
]

MCQ_ITEM = {"question": "How many dogs are there?", "options": ["one", "two", "three", "four"], "gold": 1}
MVBENCH_ITEM = {"question": "How many times?", "options": ["one", "two", "three"], "gold": 1}

OPEN_OUTPUTS = [
    "17",
    " 17",
    "17 ",
    "17.0",
    "17.5",
    "17.9",
    "18",
    "Answer: 17",
    "**17**",
    "17\n\nExplanation: the bar reads 17.",
    "The answer is 17.",
    "\\boxed{17}",
    "</think><answer>\\boxed{17}</answer>",
    "<think>x</think> <answer>\\boxed{17.2}</answer>",
    "<think>x</think><answer>\\boxed{0.17}</answer>",
    "<think>x</think><answer>\\boxed{1700}</answer>",
    "<think>x</think><answer>17</answer>",
    "seventeen",
    "",
    "17%",
    "0.17",
    "1,7",
]

OPEN_CASES: list[dict[str, Any]] = [
    {"answers": ["17"]},
    {"answers": ["0.17"]},
    {"answers": ["17%"]},
    {"answers": ["0"]},
]

TEXT_OUTPUTS = [
    "Yes",
    "yes",
    "Yes ",
    "yes.",
    "Answer: Yes",
    "**Yes**",
    "No",
    "",
    "</think><answer>\\boxed{Yes}</answer>",
    "<think>x</think><answer>\\boxed{\\text{Yes}}</answer>",
    "<think>x</think><answer>\\boxed{No}</answer>",
    "Canada",
    "canada",
    "the canada",
    "Canad",
    "</think><answer>\\boxed{Canada}</answer>",
    "<think>x</think><answer>\\boxed{Cnada}</answer>",
]

TEXT_CASES: list[dict[str, Any]] = [
    {"answers": ["Yes"]},
    {"answers": ["Canada"]},
    {"answers": ["canada", "CA"]},
]

JUDGE_REPLIES = [
    "0",
    "1",
    "2",
    "3",
    "4",
    "2.",
    "**2**",
    "<think>close enough</think>2",
    " 2\n",
    "2 ",
    "Score: 2",
    "-1",
    "two",
    "",
    "3/3",
]


def cases() -> dict[str, list[dict[str, Any]]]:
    """benchmark -> [{"item": item fields, "outputs": [...]}]: every benchmark some profile other than caprl's
    covers."""
    mcq = [{"item": MCQ_ITEM, "outputs": MCQ_OUTPUTS}, {"item": {**MCQ_ITEM, "gold": 0}, "outputs": MCQ_OUTPUTS}]
    open_ = [{"item": c, "outputs": OPEN_OUTPUTS} for c in OPEN_CASES]
    text = [{"item": c, "outputs": TEXT_OUTPUTS} for c in TEXT_CASES]
    return {
        "mmstar": mcq,
        "seedbench": mcq,
        "seedbench-2k": mcq,
        "video-mme": mcq,
        "mvbench": [{"item": MVBENCH_ITEM, "outputs": MCQ_OUTPUTS}],
        "chartqa": open_ + text,
        "chartqapro": open_ + text,
        "infovqa": open_ + text,
        "mmbench-video": [{"item": {"question": "What happens?", "answers": ["a dog runs"]}, "outputs": JUDGE_REPLIES}],
    }
