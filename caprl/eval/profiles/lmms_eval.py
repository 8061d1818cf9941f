"""The ``lmms-eval`` profile: answers read and scored as lmms-eval's task code does, quirks included.

Reproduced from EvolvingLMMs-Lab/lmms-eval at commit ``75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3`` (MIT licence):
``lmms_eval/tasks/_task_utils/mcq_extract.py`` (``extract_mcq_answer``), ``tasks/mmstar/utils.py``,
``tasks/seedbench/utils.py``, ``tasks/mvbench/utils.py`` (``mcq_acc``, ``mvbench_aggregate_results``),
``tasks/videomme/utils.py``, ``tasks/chartqa/utils.py`` (``relaxed_correctness``), ``api/metrics.py``
(``anls``), ``tasks/mmvu/utils.py`` (``evaluate_with_rule_based``), ``tasks/tomato/utils.py``
(``parse_multi_choice_response``), ``tasks/timelens/utils.py`` (``extract_time``, ``iou``) and
``tasks/chartqapro/utils.py`` (``chartqapro_process_results``). lmms-eval scores the model's raw output (its
``<think>`` stripping is opt-in per task and none of these opt in), so the profile reads the reader's raw output the
same way. MMVU's open questions the rules reject go to an LLM judge with lmms-eval's own prompt and verdict reading
(``tasks/mmvu/utils.py``, ``_get_pipeline``; ``verifiers/pipeline.py``, ``extractors.py``, ``openai.py``,
``base.py``; ``api/reasoning.py``), asked of the user's judge model where lmms-eval asks ``gpt-4o-2024-11-20``.
"""

from __future__ import annotations

import re
import string

from caprl.eval.metrics.chartqapro import CHOICE_TYPES, chartqapro_score
from caprl.eval.metrics.grounding import THRESHOLDS
from caprl.eval.metrics.judge import JudgeSpec
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


# ------------------------------------------------------------------------------------------------------- MMVU

_SUPERSCRIPTS = str.maketrans({s: f"^{d}" for s, d in zip("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789", strict=True)})
_BIG_O = re.compile(r"O\s*\([^)]+\)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+\.?\d*")


def _words(text: str) -> list[str]:
    return [w.strip(string.punctuation) for w in text.split() if w.strip(string.punctuation)]


def mmvu_choice_rule(prediction: str, gold: str, choices: dict[str, str]) -> bool:
    """lmms-eval's MMVU rule for a multiple-choice question (no judge is asked for these). Right when the gold
    letter stands alone anywhere in the output, in any case (so "A or B" is right for B, and the article in "a
    cat" is right for A); or when the gold option's text is in the output; or when the gold letter occurs
    anywhere (inside any word) and so does one of the option text's words longer than two characters."""
    pred = str(prediction).strip()
    gold = str(gold).strip()
    # Upstream first compares the first standalone letter with the gold; that is implied by the next test.
    if gold.upper() in pred.upper() and re.search(rf"\b{re.escape(gold)}\b", pred, re.IGNORECASE):
        return True
    if gold in choices:
        text, lowered = choices[gold].strip().lower(), pred.lower()
        if text in lowered:
            return True
        if gold.upper() in pred.upper():
            keys = [w for w in (w.strip(string.punctuation) for w in text.split()) if len(w) > 2]
            if keys and any(k in lowered for k in keys):
                return True
    return False


def mmvu_open_rule(prediction: str, gold: str) -> bool:
    """lmms-eval's MMVU rule for an open question, tried before its judge: lower-cased, superscripts as "^2",
    whitespace collapsed; right when either text contains the other (an empty output is in every gold), when the
    first numbers of each are within 0.01, when a gold of 2-5 words has all its words longer than two characters
    among the output's words (a gold of short words only is matched by anything), or when both hold the same
    "O(...)" (the texts are lower-cased by then, so "o (" in "two (2)" counts)."""
    pred = str(prediction).strip().lower().translate(_SUPERSCRIPTS)
    gold = str(gold).strip().lower().translate(_SUPERSCRIPTS)
    p, g = " ".join(pred.split()), " ".join(gold.split())
    if p == g or g in p or p in g:
        return True
    p_nums, g_nums = _NUMBER.findall(pred), _NUMBER.findall(gold)
    if p_nums and g_nums and abs(float(g_nums[0]) - float(p_nums[0])) < 0.01:
        return True
    g_words, p_words = _words(g), _words(p)
    if 2 <= len(g_words) <= 5 and all(w in p_words for w in g_words if len(w) > 2):
        return True
    p_o, g_o = _BIG_O.search(p), _BIG_O.search(g)
    return bool(p_o and g_o and p_o.group(0) == g_o.group(0))  # both already lower-cased, superscripts replaced


_MMVU_JUDGE_PROMPT = """You are a strict evaluator assessing answer correctness. You must output 1 for fully correct \
answers and 0 for any other case.

# Evaluation Rules for Open-Ended Questions
- The model prediction may contain reasoning, focus on extracting the final answer.
- Score 1 if the prediction matches the answer semantically, even if in different format.
- For mathematical notation, treat equivalent forms as correct (e.g., O(n²) = O(n^2), n² = n^2).
- Score 0 for partially correct answers or answers with extra incorrect information.
- Ignore minor differences in formatting, capitalization, or spacing.
- Treat numerical answers as correct if they match within reasonable precision.
- For questions requiring units, both value and unit must be correct.

Return only "1" or "0" with no additional text or formatting.

Question: {question}
Correct Answer: {reference}
Model Prediction: {answer}"""
# lmms-eval's ``custom_prompt`` for MMVU (``_get_pipeline``), its placeholders ``{question}``, ``{ground_truth}``
# and ``{prediction}`` named as caprl's judge prompts name them.

_REASONING_TAGS = (("<think>", "</think>"), ("<thinking>", "</thinking>"))


def strip_reasoning(text: str) -> str:
    """lmms-eval's ``StripReasoningExtractor`` (``api/reasoning.py``, ``strip_reasoning_tags``): for ``<think>``
    then ``<thinking>`` (case-sensitive), blocks are cut from the first opening tag to the next closing tag while
    both tags remain (and no further once a closing tag comes only before the opening one); a closing tag left
    with no opening tag keeps only what follows the last one; an unclosed opening tag stays. Then stripped."""
    for start_tag, end_tag in _REASONING_TAGS:
        while start_tag in text and end_tag in text:
            start = text.find(start_tag)
            end = text.find(end_tag, start)
            if end == -1:
                break
            text = text[:start] + text[end + len(end_tag) :]
        if end_tag in text and start_tag not in text:
            text = text.rsplit(end_tag, 1)[-1]
    return text.strip()


class _VerifierJudge(JudgeSpec):
    """lmms-eval's MMVU judge as its ``VerificationPipeline`` asks it: the output through
    ``StripReasoningExtractor``, the question as ``construct_question_prompt`` gives it ("Question: " before it,
    so the prompt reads "Question: Question: ..."), ``custom_prompt.format(...)`` sent as the only (user) message,
    no system message; the reply read by ``parse_binary_response`` (``reply="binary"``)."""

    def messages(self, question: str, reference: str, answer: str) -> list[dict[str, str]]:
        return super().messages(f"Question: {question}", reference, strip_reasoning(answer))


MMVU_JUDGE = _VerifierJudge(name="lmms-eval-mmvu", system="", user=_MMVU_JUDGE_PROMPT, max_score=1, reply="binary")


def _mmvu_answer(raw: str, item: EvalItem, mode: str) -> str | None:
    return raw  # upstream's rules and its judge both take the raw output (the judge's extractor strips it)


def _mmvu_judged(prediction: str | None, item: EvalItem) -> bool:
    """An open answer the rules reject: upstream then asks its judge (multiple choice never)."""
    return not item.is_mcq and not mmvu_open_rule(prediction or "", item.answers[0])


def _mmvu_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    if item.is_mcq:
        choices = {LETTERS[i]: o for i, o in enumerate(item.options or [])}
        return {"score": float(mmvu_choice_rule(prediction or "", item.gold_letter or "", choices))}
    # The score stage brings here only the open answers the rules accept (1); a rejected one goes to the judge,
    # and scores 0 without one, as upstream when its judge call fails.
    return {"score": float(mmvu_open_rule(prediction or "", item.answers[0]))}


# ------------------------------------------------------------------------------------------------------ TOMATO


def tomato_parse(response: str, options: list[str]) -> str:
    """lmms-eval's TOMATO parser (``parse_multi_choice_response``, its GPT parser being off). Any of the option
    letters occurring *anywhere* as a capital (the "A" of "Answer: B" too) is a candidate; with several, the one
    whose "(X)" comes last wins, and when none is written "(X)" the first candidate (so "Answer: B" reads A).
    With no capital letter, an output of more than five words is searched for the options' texts (the last one
    found wins); with nothing found the answer is "A"."""
    letters = [chr(65 + i) for i in range(len(options))]
    texts = dict(zip(letters, options, strict=True))
    for ch in ",.!?;:'":
        response = response.strip(ch)
    padded = f" {response} "
    found = [c for c in letters if c in padded]
    by_text = False
    # (upstream's next test, " X " in the output, can find nothing the test above did not)
    if not found and len(padded.split()) > 5:
        found = [c for c in letters if texts[c].lower() in padded.lower()]
        by_text = True
    if not found:
        return "A"
    if len(found) == 1:
        return found[0]
    # with no "(X)" every position is -1; with candidates by text, the last occurrence of each text
    at = [padded.lower().rfind(texts[c].lower()) if by_text else padded.rfind(f"({c})") for c in found]
    return found[max(range(len(found)), key=at.__getitem__)]  # the first of equal positions, as np.argmax


def _tomato_answer(raw: str, item: EvalItem, mode: str) -> str | None:
    return tomato_parse(raw, list(item.options or []))


# ---------------------------------------------------------------------------------------------------- TimeLens

_CLOCK = re.compile(r"\b(\d{1,2}:\d{2}:\d{2}(?:\.\d+)?|\d{1,2}:\d{2}(?:\.\d+)?)\b")
_RANGES = (re.compile(r"(\d+\.?\d*)\s*-\s*(\d+\.?\d*)"), re.compile(r"(\d+\.?\d*)\s+to\s+(\d+\.?\d*)"))
_BARE = re.compile(r"\b\d+\.?\d*\b")


def _seconds(clock: str) -> float:
    parts = clock.split(":")
    if len(parts) == 3:
        return int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
    return int(parts[0]) * 60 + float(parts[1])


def timelens_spans(text: str) -> list[tuple[float, float]]:
    """lmms-eval's ``extract_time``: clock times (h:mm:ss, m:ss) paired in order (an odd last one dropped); else
    every "a - b" (else "a to b"); else the bare numbers paired in order. Not rounded, not reordered."""
    text = text.lower()
    clocks = _CLOCK.findall(text)
    clocks = [_seconds(c) for c in clocks[: len(clocks) // 2 * 2]]
    spans = [(clocks[i], clocks[i + 1]) for i in range(0, len(clocks), 2)]
    if not spans:
        for pattern in _RANGES:
            pairs = pattern.findall(text)
            if pairs:
                spans = [(float(a), float(b)) for a, b in pairs]
                break
    if not spans:
        nums = [float(n) for n in _BARE.findall(text)]
        nums = nums[: len(nums) // 2 * 2]
        spans = [(nums[i], nums[i + 1]) for i in range(0, len(nums), 2)]
    return spans


def timelens_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """lmms-eval's ``iou``: overlap of the later start and the earlier end over the earlier start to the later
    end (a reversed span overlaps nothing)."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return 0.0 if union <= 0 else max(inter, 0) / union


def _timelens_answer(raw: str, item: EvalItem, mode: str) -> str | None:
    return raw if timelens_spans(raw) else None  # no time found: scored 0 (upstream's "bad_pred")


def _timelens_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    assert item.span is not None
    spans = timelens_spans(prediction) if prediction is not None else []
    value = timelens_iou(spans[0], item.span) if spans else 0.0
    return {"score": value, **{f"r1@{m}": float(value >= m) for m in THRESHOLDS}}


# -------------------------------------------------------------------------------------------------- ChartQAPro


def _chartqapro_score(prediction: str | None, item: EvalItem) -> dict[str, float]:
    """``chartqapro_process_results``: prediction and gold stripped of whitespace, then of periods, then of
    newlines; Fact Checking and Multi Choice by exact match (the official script computes that and never uses
    it); otherwise the official element-wise rule (years exact, numbers within 5%, text by ANLS)."""
    pred = (prediction or "").strip().strip(".").strip("\n")
    gold = str(item.answers[-1]).strip().strip(".").strip("\n")
    qtype = item.extra.get("question_type")
    flags = list(item.extra.get("year_flags") or [])
    if qtype == "Conversational" and flags:
        flags = flags[-1:]
    exact = qtype in CHOICE_TYPES
    return {"score": chartqapro_score(gold, pred, [str(f) for f in flags], always_exact=exact)}


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
        Scoring(
            "lmms-eval",
            "mmvu",
            _mmvu_answer,
            _mmvu_score,
            judged=_mmvu_judged,
            judge=MMVU_JUDGE,
            source=_src(
                "lmms_eval/tasks/mmvu/utils.py",
                "lmms_eval/verifiers/pipeline.py",
                "lmms_eval/verifiers/extractors.py",
                "lmms_eval/api/reasoning.py",
                "lmms_eval/verifiers/openai.py",
                "lmms_eval/verifiers/base.py",
            ),
        ),
        Scoring("lmms-eval", "tomato", _tomato_answer, _letter_score, source=_src("lmms_eval/tasks/tomato/utils.py")),
        Scoring(
            "lmms-eval",
            "timelens",
            _timelens_answer,
            _timelens_score,
            aggregate="group_mean",  # a task per source; the group declares no aggregate: the mean of the three
            source=_src("lmms_eval/tasks/timelens/utils.py"),
        ),
        Scoring(
            "lmms-eval", "chartqapro", _whole, _chartqapro_score, source=_src("lmms_eval/tasks/chartqapro/utils.py")
        ),
    ]


__all__ = ["LETTERS", "extract_mcq_answer", "mcq_acc", "scorings"]
