"""The ``lmms-eval`` profile: answers read and scored as lmms-eval's task code does, quirks included.

Reproduced from EvolvingLMMs-Lab/lmms-eval at commit ``75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3`` (MIT licence):
``lmms_eval/tasks/_task_utils/mcq_extract.py`` (``extract_mcq_answer``), ``tasks/mmstar/utils.py``,
``tasks/seedbench/utils.py``, ``tasks/mvbench/utils.py`` (``mcq_acc``, ``mvbench_aggregate_results``),
``tasks/videomme/utils.py``, ``tasks/chartqa/utils.py`` (``relaxed_correctness``) and ``api/metrics.py``
(``anls``). lmms-eval scores the model's raw output (its ``<think>`` stripping is opt-in per task and none of these
opt in), so the profile reads the reader's raw output the same way.
"""

from __future__ import annotations

import re

from caprl.eval.profiles.base import Scoring
from caprl.eval.profiles.rules import anls_score, relaxed_correctness
from caprl.eval.types import EvalItem
from caprl.schema import LETTERS

COMMIT = "75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3"
REPO = "EvolvingLMMs-Lab/lmms-eval"

# ---------------------------------------------------------------------------------- extract_mcq_answer

_PHRASES = (
    "the answer is",
    "answer is",
    "the correct answer is",
    "correct answer is",
    "the best answer is",
    "best answer is",
    "the correct option is",
    "correct option is",
    "the best option is",
    "best option is",
    "the choice is",
    "choice is",
    "the correct choice is",
    "correct choice is",
    "i choose",
    "i select",
    "i pick",
    "my answer is",
    "my choice is",
    "옵션",
    "정답은",
    "답은",
    "답:",
    "答案是",
    "答案为",
    "选",
    "答えは",
)
# Higher wins; within one format the later position wins.
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3}
_PRIORITY.update({"space": 2, "fallback": 0})


def extract_mcq_answer(response: str, choices: str = "ABCDEFGH") -> str:
    """The letter lmms-eval reads from ``response`` ("" for none). Every format is a plain substring test, ranked
    (start of text first, then end, answer phrase, "(B)", "B.", "B:", "B)", "B "), so "A or B" reads A, and the
    fallback takes any capital choice letter inside any word."""
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in ",.!?;:'\"":
        text = text.strip(char)
    text = f" {text} "
    found: list[tuple[str, int, str]] = []
    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})")):
        for ch in choices:
            if pattern.format(ch) in text:
                found.append((ch, text.rfind(pattern.format(ch)), fmt))
    for ch in choices:
        if f"{ch} " in text:
            found.append((ch, text.rfind(f"{ch} "), "space"))
    lowered = text.lower()
    for phrase in _PHRASES:
        at = lowered.find(phrase)
        if at != -1:
            for ch in choices:
                pos = text.find(ch, at + len(phrase))
                if pos != -1:
                    found.append((ch, pos, "phrase"))
    stripped = text.strip()
    for ch in choices:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            found.append((ch, 0, "start"))
    for ch in choices:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            found.append((ch, len(text) - 1, "end"))
    if not found:
        found = [(ch, text.rfind(ch), "fallback") for ch in choices if ch in text]
    if not found:
        return ""
    # A stable sort on (priority, position), descending, as the original's list.sort(reverse=True).
    found.sort(key=lambda c: (_PRIORITY[c[2]], c[1]), reverse=True)
    return found[0][0]


# ---------------------------------------------------------------------------------------- MVBench mcq_acc

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_OPTION = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)
_LETTER = re.compile(r"\b([A-E])\b", re.IGNORECASE)


def _punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # re.UNICODE lands in sub's ``count`` argument upstream (32): at most 32 periods are removed.
    return _PERIOD_STRIP.sub("", out, count=int(re.UNICODE))


def mvbench_process(answer: str) -> str:
    """lmms-eval's MVBench answer normalisation: "B. text" → "B"; else punctuation dropped, lower-cased, and the
    first standalone letter a-e (in any case: the article "a" too) upper-cased, or the whole normalised text."""
    m = _OPTION.match(answer.strip())
    if m:
        return m.group(1).upper()
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    answer = _punctuation(answer)
    answer = answer.strip("'").strip('"').strip(")").strip("(").strip().lower()
    m = _LETTER.search(answer)
    return m.group(1).upper() if m else answer


def mcq_acc(answer: str, pred: str) -> float:
    return float(mvbench_process(pred) == mvbench_process(answer))


# ----------------------------------------------------------------------------------------------- scorings


def _letter(choices: str):
    def answer(raw: str, item: EvalItem, mode: str) -> str | None:
        return extract_mcq_answer(raw, choices) or None

    return answer


def _letter_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    gold = (item.gold_letter or "").strip().upper()
    return {"score": float((prediction or "") == gold)}


def _seed_answer(raw: str, item: EvalItem, mode: str) -> str | None:
    pred = raw.strip()
    return (pred[0] if len(pred) > 1 else pred) or None


def _seed_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    return {"score": float((prediction or "").lower().strip() == (item.gold_letter or "").lower().strip())}


def _raw(raw: str, item: EvalItem, mode: str) -> str | None:
    # MVBench scores the raw output and leaves an empty one out of the denominator: "" is the unanswered case.
    return raw if raw != "" else None


def _mvbench_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    if prediction is None:
        return {"score": 0.0}
    return {"score": mcq_acc(item.gold_letter or "", prediction)}


def _chartqa_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    # process_results(doc, results): relaxed_correctness(pred, doc["answer"]): the 5% is relative to the gold.
    return {"score": float(relaxed_correctness(item.answers[0], prediction or ""))}


def _infovqa_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    return {"score": anls_score(item.answers, prediction or "")}


def _whole(raw: str, item: EvalItem, mode: str) -> str | None:
    return raw


def _src(*paths: str) -> str:
    return "; ".join(f"{REPO} {p}@{COMMIT}" for p in paths)


_MCQ = "lmms_eval/tasks/_task_utils/mcq_extract.py"


def _l2(item: EvalItem) -> str | None:
    return item.extra.get("l2_category")


def scorings() -> list[Scoring]:
    seed = dict(answer=_seed_answer, score=_seed_score, source=_src("lmms_eval/tasks/seedbench/utils.py"))
    return [
        Scoring(
            "lmms-eval",
            "mmstar",
            _letter("ABCD"),
            _letter_score,
            aggregate="group_mean",
            group=_l2,
            source=_src(_MCQ, "lmms_eval/tasks/mmstar/utils.py"),
        ),
        Scoring("lmms-eval", "seedbench", **seed),  # type: ignore[arg-type]
        Scoring("lmms-eval", "seedbench-2k", **seed),  # type: ignore[arg-type]
        Scoring(
            "lmms-eval",
            "mvbench",
            _raw,
            _mvbench_score,
            aggregate="answered",
            source=_src("lmms_eval/tasks/mvbench/utils.py"),
        ),
        Scoring(
            "lmms-eval",
            "video-mme",
            _letter("ABCD"),
            _letter_score,
            source=_src(_MCQ, "lmms_eval/tasks/videomme/utils.py"),
        ),
        Scoring("lmms-eval", "chartqa", _whole, _chartqa_score, source=_src("lmms_eval/tasks/chartqa/utils.py")),
        Scoring("lmms-eval", "infovqa", _whole, _infovqa_score, source=_src("lmms_eval/api/metrics.py")),
    ]


__all__ = ["LETTERS", "extract_mcq_answer", "mcq_acc", "scorings"]
