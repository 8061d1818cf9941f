"""The ``caprl-paper`` profile: image Prism as CapRL's paper pipeline runs it, so caprl's numbers can sit beside
the CapRL paper's Prism table.

Reproduced from InternLM/CapRL at commit ``9bbc1bb7d8e8cd2457bfc77ce64b92fb992a7f83`` (Apache-2.0):
``Prism_Evaluation/Eval_CapRL.py`` (``math_parse``, ``verify_math``, ``verify_chart``, the stage-2 reader prompt
and sampling) and ``Prism_Evaluation/openrlhf/models/remote_rm/vqa_eval.py`` (``process_line``,
``relaxed_correctness``, ``anls_compute``).

- Reading: "Here is a detailed caption of an image: {cap}. Please answer the question based on the caption."
  then the question; sampled at temperature 1.0, up to 2048 tokens. CapRL's evaluation files (``lmm_eval_*.json``)
  are not public, so what follows the caption sentence in their prompts is unknown; caprl's continuation (question,
  options, and the request to think in ``<think>`` tags and answer as ``\\boxed{}`` inside ``<answer>`` tags) is
  its own wording.
- Answer: the last ``\\boxed{...}`` inside ``<answer>`` after ``</think>``; without it the answer is empty.
- Score: ``math_verify`` equivalence with the gold (a gold ``math_verify`` cannot parse scores 1.0 for any
  answer); ChartQA, ChartQAPro and InfoVQA (file names with "char" or "info") also try relaxed accuracy of the
  number ×1, ×0.01 and ×100, with target and prediction swapped (the 5% is relative to the *prediction*, and a
  prediction of 0 needs a string match), InfoVQA also ANLS, and take the max.
- Aggregate: the mean over questions of the mean over the 4 captions (M_Acc), and BoN.

Needs ``math-verify`` (``pip install 'caprl[paper]'``); it is imported when this profile scores.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from caprl.errors import InputError
from caprl.eval.profiles.base import Reading, Scoring
from caprl.eval.profiles.rules import anls_distance, relaxed_correctness
from caprl.eval.types import EvalItem
from caprl.reward.prompt import Messages
from caprl.schema import LETTERS

COMMIT = "9bbc1bb7d8e8cd2457bfc77ce64b92fb992a7f83"
REPO = "InternLM/CapRL"

LEAD = "Here is a detailed caption of an image: {caption}. Please answer the question based on the caption."
FORMAT = (
    "Think about the question inside <think> </think> tags, then give your final answer inside <answer> </answer> "
    "tags, written as \\boxed{{...}}: <think> reasoning </think> <answer> \\boxed{{final answer}} </answer>."
)
MCQ_FORMAT = FORMAT.replace("final answer}}", "option letter}}")
TEMPERATURE = 1.0
MAX_NEW_TOKENS = 2048

_ANSWER = re.compile(r"</think>\s*<answer>.*?\\boxed{(.*)}.*?</answer>", re.DOTALL)


class MathVerifyMissing(InputError):
    exit_code = 2


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError:
        raise MathVerifyMissing(
            "the caprl-paper profile scores with math-verify, which is not installed: pip install 'caprl[paper]' "
            "(or pip install 'math-verify>=0.8,<0.9')"
        ) from None
    return math_verify


def messages(caption: str, item: EvalItem) -> Messages:
    lines = [LEAD.format(caption=caption), item.question]
    if item.is_mcq:
        lines += [f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options or [])]
    lines.append((MCQ_FORMAT if item.is_mcq else FORMAT).format())
    return [{"role": "user", "content": "\n".join(lines)}]


READING = Reading(
    name="caprl-paper",
    messages=messages,
    temperature=TEMPERATURE,
    max_new_tokens=MAX_NEW_TOKENS,
    wording=LEAD + FORMAT + MCQ_FORMAT,
)


# ------------------------------------------------------------------------------------------ Eval_CapRL.py


def math_parse(content: str) -> list[Any]:
    mv = _math_verify()
    return mv.parse(content, extraction_mode="first_match", extraction_config=[mv.LatexExtractionConfig()])


def boxed_answer(content: str) -> str:
    """The last match of CapRL's answer pattern ("" when there is none): greedy inside the box, so it runs to the
    last ``}`` before ``</answer>``."""
    matches = _ANSWER.findall(content)
    return matches[-1] if matches else ""


def verify_math(content: str, sol: str) -> float:
    gold = math_parse(sol)
    if not gold:
        return 1.0  # upstream prints "Failed to parse gold solution" and pays full marks
    answer = boxed_answer(content)
    parsed = math_parse(f"${answer}$")
    verify = _math_verify().verify
    try:
        return float(max(float(verify(answer, gold)), float(verify(parsed, gold))))
    except Exception:  # noqa: BLE001 - upstream's own catch-all
        return 0.0


def _golds(answer: str) -> list[str]:
    # process_line: a gold that evaluates to a list is its elements (upstream eval()s; a literal is parsed here).
    try:
        value = ast.literal_eval(answer)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return [answer]
    return [str(a) for a in value] if isinstance(value, list) else [answer]


def _relaxed(prediction: str, answer: str) -> float:
    pred = prediction.strip()
    # relaxed_correctness(ret['pred'], x): the prediction is passed as the target and the gold as the prediction.
    return float(max(relaxed_correctness(pred, gold) for gold in _golds(answer)))


def verify_chart(content: str, sol: str, use_anls: bool = False) -> float:
    truth = sol[1:-1]
    answer = boxed_answer(content)
    try:
        student: Any = math_parse(f"${answer}$")[-1]
    except Exception:  # noqa: BLE001 - upstream's bare except
        student = ""
    reward = 0.0
    try:
        number = float(student)
        for scale in (1, 0.01, 100):
            reward = max(reward, _relaxed(str(scale * number), truth))
    except (ValueError, IndexError):
        reward = _relaxed(student, truth)
    if not use_anls:
        return float(reward)
    best = 1 - min(anls_distance(gold, student) for gold in _golds(truth))
    return max(float(reward), 0.0 if best < 0.5 else best)


# ------------------------------------------------------------------------------------------------ scorings


def gold_text(item: EvalItem) -> str:
    """The gold as CapRL's evaluation files hold it (an assumption: they were converted from lmms-eval's data):
    the letter for a multiple-choice question, the answer for one gold, the Python list of several golds."""
    if item.is_mcq:
        return item.gold_letter or ""
    return item.answers[0] if len(item.answers) == 1 else repr(list(item.answers))


def _raw(raw: str, item: EvalItem, mode: str) -> str | None:
    return raw


def readable(prediction: str | None) -> bool:
    """Whether the output holds CapRL's answer format (the parse-failure rate counts those that do not)."""
    return prediction is not None and bool(_ANSWER.search(prediction))


def _math(prediction: str | None, item: EvalItem) -> dict[str, float]:
    return {"score": verify_math(prediction or "", f"${gold_text(item)}$")}


def _chart(use_anls: bool, last_turn: bool = False):
    def score(prediction: str | None, item: EvalItem) -> dict[str, float]:
        # ChartQAPro's gold is its last turn's answer (earlier turns are shown in the question)
        sol = f"${item.answers[-1] if last_turn else gold_text(item)}$"
        content = prediction or ""
        return {"score": max(verify_chart(content, sol, use_anls=use_anls), verify_math(content, sol))}

    return score


def scorings() -> list[Scoring]:
    src = "; ".join(
        f"{REPO} {p}@{COMMIT}"
        for p in ("Prism_Evaluation/Eval_CapRL.py", "Prism_Evaluation/openrlhf/models/remote_rm/vqa_eval.py")
    )
    common: dict[str, Any] = dict(answer=_raw, reading=READING, readable=readable, source=src)
    return [
        Scoring("caprl-paper", "chartqa", score=_chart(False), **common),
        Scoring("caprl-paper", "chartqapro", score=_chart(False, last_turn=True), **common),
        Scoring("caprl-paper", "infovqa", score=_chart(True), **common),
        Scoring("caprl-paper", "mmstar", score=_math, **common),
        Scoring("caprl-paper", "seedbench", score=_math, **common),
        Scoring("caprl-paper", "seedbench-2k", score=_math, **common),
    ]
