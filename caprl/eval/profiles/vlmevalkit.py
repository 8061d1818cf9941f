"""The ``vlmevalkit`` profile: answers read and scored as VLMEvalKit does with its judge-free ``exact_matching``
policy, quirks included.

Reproduced from open-compass/VLMEvalKit at commit ``e8e78f05f3080fe28154f2130321f17951c3be94`` (Apache-2.0):
``vlmeval/utils/matching_util.py`` (``can_infer``), ``vlmeval/dataset/utils/multiple_choice.py``
(``extract_answer_from_item``, ``report_acc``), ``vlmeval/dataset/image_vqa.py`` + ``utils/vqa_eval.py``
(``process_line``, ``hit_calculate``), ``vlmeval/dataset/utils/videomme.py`` (``extract_characters_regex``,
``extract_option``), ``vlmeval/dataset/mvbench.py`` + ``utils/mvbench.py`` (``check_ans_with_model``),
``vlmeval/dataset/mmbench_video.py`` (the judge's verdict read with ``istype(x, int)``) and
``vlmeval/dataset/chartqapro.py`` + ``utils/chartqapro.py`` (``evaluate_predictions_chartqapro``, rules only).

VLMEvalKit's default for MCQs asks an LLM (``chatgpt-0125``) to map an answer to an option when its rules find
none; caprl reproduces the ``exact_matching`` policy (no LLM: such an answer is option "Z", wrong), which is what
VLMEvalKit runs without an API key. Where VLMEvalKit ``eval``s strings, caprl parses literals only.
"""

from __future__ import annotations

import ast
import re

from caprl.eval.metrics.chartqapro import chartqapro_item_score
from caprl.eval.profiles.base import Scoring
from caprl.eval.profiles.rules import anls_score, relaxed_correctness
from caprl.eval.types import EvalItem
from caprl.schema import LETTERS

COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"
REPO = "open-compass/VLMEvalKit"

# ------------------------------------------------------------------------------------------------ can_infer

_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
_REJECTIONS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)


def can_infer_option(answer: str, choices: dict[str, str]) -> str | None:
    if "Failed to obtain answer via API" in answer:
        return None
    if any(r in answer for r in _REJECTIONS):
        return "Z"
    mod = answer
    for c in ".()[],:;!*#{}":
        mod = mod.replace(c, " ")
    splits = [x.strip() for x in mod.split()]
    count = sum(c in splits for c in choices)
    if count == 1:
        for ch in choices:
            # (the VERBOSE environment variable's "A might be a quantifier" branch is a logging aid: not taken)
            if ch in splits and splits.index(ch) > len(splits) - 5:
                return ch
    elif count == 0 and sum(c in splits for c in ("Z", "")) == 1:
        return "Z"
    m = _VERBOSE_ANSWER.search(answer or "")
    if m and m.group(1).upper() in choices:
        return m.group(1).upper()
    return None


def can_infer_text(answer: str, choices: dict[str, str]) -> str | None:
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    hits = [k for k, v in choices.items() if str(v).lower() in answer]
    return hits[0] if len(hits) == 1 else None


def can_infer(answer: str, choices: dict[str, str]) -> str | None:
    answer = str(answer)
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)


def _choices(item: EvalItem) -> dict[str, str]:
    return {LETTERS[i]: o for i, o in enumerate(item.options or [])}


def exact_matching(raw: str, item: EvalItem) -> str:
    """``extract_answer_from_item`` with no judge model: ``can_infer``, else "Z" (which is never the gold)."""
    return can_infer(raw, _choices(item)) or "Z"


# ------------------------------------------------------------------------------------------------ Video-MME

# The list as written upstream: two missing commas glue four prefixes into two strings that never occur.
_VIDEOMME_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option isThe correct option is",
    "Best answer:Best option:",
    "Answer:",
    "Option:",
)


def videomme_extract(s: str) -> str:
    s = s.strip()
    for prefix in _VIDEOMME_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return ""
    m = re.search(r"[ABCD]", s)
    return "" if m is None else m[0]


def _videomme_answer(raw: str, item: EvalItem, mode: str) -> str | None:
    # An empty regex result goes to extract_option: can_infer over the options, "Z" (wrong) without a judge.
    found = videomme_extract(raw) or exact_matching(raw, item)
    return None if found == "Z" else found


# --------------------------------------------------------------------------------------------------- MVBench


def mvbench_check(pred: str, item: EvalItem) -> bool:
    """``check_ans_with_model`` with no judge: the prediction's first word, periods dropped, is a *substring* of
    the gold's "(b)" (so "b", "(b", "" and "(" all pass), or "(b)" is a substring of that word; else
    ``can_infer``."""
    gold = f"({item.gold_letter}) {(item.options or [])[item.gold or 0]}"
    pred_option = pred.lower().strip().split(" ")[0]
    gt_option = gold.lower().strip().split(" ")[0]
    if pred_option.replace(".", "") in gt_option or gt_option in pred_option:
        return True
    return exact_matching(pred, item) == item.gold_letter


def _whole(raw: str, item: EvalItem, mode: str) -> str | None:
    return raw


def _mvbench_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    return {"score": float(mvbench_check(prediction or "", item))}


# ---------------------------------------------------------------------------------------------- image MCQ


def _mcq_answer(raw: str, item: EvalItem, mode: str) -> str | None:
    found = exact_matching(raw, item)
    return None if found == "Z" else found


def _letter_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    return {"score": float(prediction is not None and prediction == item.gold_letter)}


# ---------------------------------------------------------------------------------------------- image VQA


def _gold_list(item: EvalItem) -> list[str]:
    # process_line: a gold that reads as a Python list is its elements (the TSV stores InfoVQA's golds that way;
    # caprl's items already hold them as a list).
    return [str(a) for a in item.answers]


def _chartqa_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    pred = (prediction or "").strip()
    return {"score": float(max(relaxed_correctness(g, pred) for g in _gold_list(item)))}


def _infovqa_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    return {"score": anls_score(_gold_list(item), prediction or "")}


def _chartqapro_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    """``evaluate_predictions_chartqapro``: ChartQAPro's released script as it is (periods then newlines stripped,
    no whitespace; the exact match it computes for Fact Checking and Multi Choice is never passed on), which is
    caprl's own ChartQAPro metric. Upstream raises on a question with no year flags; caprl reads them as "NO"."""
    qtype, flags = item.extra.get("question_type"), item.extra.get("year_flags")
    return {"score": chartqapro_item_score(str(prediction or ""), item.answers, qtype, flags)}


# ------------------------------------------------------------------------------------------- MMBench-Video


def judge_integer(reply: str) -> float | None:
    """The verdict as VLMEvalKit reads it: ``int(x) if istype(x, int) else -1``, where ``istype`` evaluates the
    reply: "2" and " 2\\n" are 2, "4" is 4 (no range check); "2.", "**2**" and anything with words
    around the digit fail (-1, counted 0 in the overall score). caprl parses a literal where VLMEvalKit ``eval``s."""
    reply = reply.strip()  # VLMEvalKit's API wrapper strips the reply
    try:
        if not isinstance(ast.literal_eval(reply), int):
            return None
        value = int(reply)  # upstream: int() of the reply string ("True" passes istype, then int() raises)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return float(value) if value >= 0 else None  # -1 is the failure mark; a negative score counts 0 either way


def _judge_input(raw: str, item: EvalItem, mode: str) -> str | None:
    return raw or None


def _src(*paths: str) -> str:
    return "; ".join(f"{REPO} {p}@{COMMIT}" for p in paths)


def scorings() -> list[Scoring]:
    mcq = dict(
        answer=_mcq_answer,
        score=_letter_score,
        source=_src("vlmeval/utils/matching_util.py", "vlmeval/dataset/utils/multiple_choice.py"),
    )
    return [
        Scoring("vlmevalkit", "mmstar", **mcq),  # type: ignore[arg-type]
        Scoring("vlmevalkit", "seedbench", **mcq),  # type: ignore[arg-type]
        Scoring("vlmevalkit", "seedbench-2k", **mcq),  # type: ignore[arg-type]
        Scoring(
            "vlmevalkit",
            "chartqa",
            _whole,
            _chartqa_score,
            source=_src("vlmeval/dataset/image_vqa.py", "vlmeval/dataset/utils/vqa_eval.py"),
        ),
        Scoring(
            "vlmevalkit",
            "infovqa",
            _whole,
            _infovqa_score,
            source=_src("vlmeval/dataset/image_vqa.py", "vlmeval/dataset/utils/vqa_eval.py"),
        ),
        Scoring(
            "vlmevalkit",
            "chartqapro",
            _whole,
            _chartqapro_score,
            source=_src("vlmeval/dataset/chartqapro.py", "vlmeval/dataset/utils/chartqapro.py"),
        ),
        Scoring(
            "vlmevalkit",
            "video-mme",
            _videomme_answer,
            _letter_score,
            source=_src("vlmeval/dataset/videomme.py", "vlmeval/dataset/utils/videomme.py"),
        ),
        Scoring(
            "vlmevalkit",
            "mvbench",
            _whole,
            _mvbench_score,
            source=_src("vlmeval/dataset/mvbench.py", "vlmeval/dataset/utils/mvbench.py"),
        ),
        Scoring(
            "vlmevalkit",
            "mmbench-video",
            _judge_input,
            lambda prediction, item: {"score": 0.0},  # every answered question goes to the judge
            judge_reply=judge_integer,
            judge_tag="vlmevalkit",
            source=_src("vlmeval/dataset/mmbench_video.py", "vlmeval/dataset/utils/mmbench_video.py"),
        ),
    ]
