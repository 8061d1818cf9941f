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


# MMVU: five options (its multiple-choice questions have A-E) and open questions whose rule lmms-eval tries
# before its judge.
MMVU_ITEM = {"question": "How many dogs are there?", "options": ["one", "two", "three", "four", "five"], "gold": 1}
MMVU_MCQ_OUTPUTS = MCQ_OUTPUTS + [
    "a cat",
    "Both of them",
    "The answer is two dogs",
    "Xb: three",
    "Bx and fourteen",
    "It is (b)",
    "FIVE",
]
MMVU_OPEN_OUTPUTS = [
    "Depth-First Search (DFS)",
    "The algorithm is depth-first search (DFS).",
    "DFS",
    "depth first search",
    "search depth-first",
    "Breadth-first search",
    "O(n²)",
    "o(n^2) time",
    "It runs in O(n log n)",
    "O(n^2)",
    "17",
    "17.004",
    "about 17.02 m",
    "18",
    "Energy, kinetic!",
    "kinetic",
    "the energy is potential",
    "two (2)",
    "n",
    "it",
    "",
    "   ",
    "<think>hm</think>DFS",
    "<think>It is 17</think>18",
    "12 and 17",
]
MMVU_OPEN_CASES: list[dict[str, Any]] = [
    {"answers": ["Depth-First Search (DFS)"]},
    {"answers": ["O(n^2)"]},
    {"answers": ["17"]},
    {"answers": ["kinetic energy"]},
    {"answers": ["of it"]},
    {"answers": ["n³"]},
]

# lmms-eval's MMVU judge: the messages its pipeline sends for each output (none when the rules accept it), and how
# it reads each reply. The outputs add reasoning tags its extractor handles in its own way, and braces.
MMVU_JUDGE_CASES: list[dict[str, Any]] = [
    {
        "question": "Which {traversal} explores one branch fully before backtracking?",
        "answers": ["Depth-First Search (DFS)"],
    },
    {"question": "What is the time complexity of the nested loop?", "answers": ["O(n^2)"]},
]
MMVU_JUDGE_OUTPUTS = MMVU_OPEN_OUTPUTS + [
    "</think>Breadth-first search",
    "<thinking>DFS?</thinking> Breadth-first search",
    "<THINK>x</THINK> breadth-first",
    "<think>unclosed breadth-first",
    "</think>a<think>b</think>c",
    "<think>a</think> mid <thinking>b</thinking> <think>c</think>end\n",
    "Answer: {prediction} BFS",
]
MMVU_JUDGE_REPLIES = [
    "1",
    "0",
    " 1\n",
    "1.",
    "0.",
    "**1**",
    "[1]",
    "Yes",
    "No",
    "",
    "   ",
    "10",
    "0.1",
    "Score: 0/1",
    "Correct",
    "correct",
    "INCORRECT",
    "Incorrect.",
    "not correct",
    "NOT_ATTEMPTED",
    "true",
    "False",
    "The answer is 0",
    "<think>maybe 1</think>0",
    "The prediction is wrong",
]

TOMATO_ITEM = {
    "question": "Which way does the wheel turn?",
    "options": ["clockwise", "counter-clockwise", "not rotating", "back and forth", "zooming in"],
    "gold": 1,
}
TOMATO_OUTPUTS = MCQ_OUTPUTS + [
    "The wheel turns counter-clockwise in the frames shown",
    "The wheel turns clockwise in the frames shown",
    "It seems to be going back and forth here",
    "counter-clockwise",
    "(A) is wrong; (B) is right",
    "I guess (B), not A",
    "'B'",
    ",B!",
    "Answer is (B)",
    "d",
]

TIMELENS_OUTPUTS = [
    "The event happens in 10 - 20 seconds.",
    "10.0 - 20.0",
    "from 10 to 20",
    "00:10 - 00:20",
    "0:00:10 to 0:00:20",
    "1:05 - 1:10",
    "The event happens in 12.5 - 25 seconds.",
    "20 - 10",
    "between 8 and 18 seconds",
    "at 15 seconds",
    "",
    "no idea",
    "[10, 20]",
    "10s-20s",
    "It starts at 0:10, ends at 0:20 and again at 0:30",
    "2023-2024",
    "0-5.5",
    "10 20 30",
    "-5 - 3",
    "from 10.5s to 19.5s, then 30 - 40",
    "<think>maybe 0 - 100</think>10 - 20",
    "Between 5 and 6.",
]
TIMELENS_CASES: list[dict[str, Any]] = [{"span": [10.0, 20.0]}, {"span": [0.0, 5.5]}, {"span": [65.0, 70.0]}]

CHARTQAPRO_OUTPUTS = [
    "True",
    "true",
    "True.",
    " True",
    "True.\n",
    "Tru",
    "b",
    "B",
    "(b)",
    "2019",
    "2019.0",
    "2020",
    "['Canada', 'Mexico']",
    "[Canada, Mexico]",
    "['Mexico', 'Canada']",
    "Canada",
    "['Canada', 'Mexico', 'USA']",
    "[2019, 2021]",
    "['2019', '2020']",
    "Paris.\n",
    "17.\n",
    " 17.",
    "17. ",
    "unanswerable",
    "",
]
_FACTOID = {"question_type": "Factoid", "year_flags": ["NO"]}
CHARTQAPRO_CASES: list[dict[str, Any]] = [
    {"answers": ["2019"], "extra": {"question_type": "Factoid", "year_flags": ["YES"]}},
    {"answers": ["True"], "extra": {"question_type": "Fact Checking", "year_flags": ["NO"]}},
    {"answers": ["b"], "extra": {"question_type": "Multi Choice", "year_flags": ["NO"]}},
    {
        "answers": ["2019", "[Canada, Mexico]"],
        "extra": {"question_type": "Conversational", "year_flags": ["YES", "NO"]},
    },
    {"answers": ["[2019, 2020]"], "extra": {"question_type": "Hypothetical", "year_flags": ["YES"]}},
    {"answers": ["Paris"], "extra": _FACTOID},
    {"answers": ["17"], "extra": _FACTOID},
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
        "chartqapro": [{"item": {**c["item"], "extra": _FACTOID}, "outputs": c["outputs"]} for c in open_ + text]
        + [{"item": c, "outputs": CHARTQAPRO_OUTPUTS} for c in CHARTQAPRO_CASES],
        "infovqa": open_ + text,
        "mmvu": [
            {"item": MMVU_ITEM, "outputs": MMVU_MCQ_OUTPUTS},
            {"item": {**MMVU_ITEM, "gold": 0}, "outputs": MMVU_MCQ_OUTPUTS},
            *({"item": c, "outputs": MMVU_OPEN_OUTPUTS} for c in MMVU_OPEN_CASES),
        ],
        "tomato": [
            {"item": TOMATO_ITEM, "outputs": TOMATO_OUTPUTS},
            {"item": {**TOMATO_ITEM, "gold": 0}, "outputs": TOMATO_OUTPUTS},
        ],
        "timelens": [{"item": c, "outputs": TIMELENS_OUTPUTS} for c in TIMELENS_CASES],
        "mmbench-video": [{"item": {"question": "What happens?", "answers": ["a dog runs"]}, "outputs": JUDGE_REPLIES}],
    }
