"""Read MCQs out of a VLM's reply to the generation prompt, accepting the usual near-misses.

Accepted, and noted in ``repairs``: code fences and prose around the JSON; a bare list instead of
``{"questions": [...]}``; other key names (``choices``, ``correct_answer``, ``q``, ...); options as labelled
strings (``"A) red"``, ``"B. blue"``) or as an object (``{"A": "red", ...}``); the answer as a letter, a labelled
option or the option's text; trailing commas, curly quotes, single-quoted Python-style literals; a reply cut off
by the token limit (the questions that were complete are kept); and a plain-text list of questions with lettered
options and an ``Answer: X`` line. Rejected questions are listed in ``problems`` with the reason (no answer,
answer not among the options, duplicate options, fewer than two options, a numeric answer, which could be 0- or
1-based). Nothing is guessed: a reply with no usable question gives no MCQs, and the caller keeps the raw text.

>>> r = parse_mcqs('```json\\n{"questions": [{"question": "Colour?", "options": ["A) red", "B) blue"], '
...                '"answer": "B"}]}\\n```')
>>> r.mcqs[0].gold_text, r.repairs
('blue', ['code fence'])
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from caprl.schema import LETTERS, MCQ, strip_option_labels

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)(?:```|$)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})

QUESTION_KEYS = ("question", "q", "stem", "prompt", "query")
OPTION_KEYS = ("options", "choices", "candidates", "answers", "alternatives")
ANSWER_KEYS = ("answer", "correct_answer", "correct", "correct_option", "correct_choice", "gold", "label", "solution")
INDEX_KEYS = ("answer_index", "correct_index", "gold_index")
KIND_KEYS = ("kind", "type", "category")
_KEYS_RE = "|".join(QUESTION_KEYS)
_HAS_QUESTION_KEY = re.compile(rf"(?<!\w)[\"']?(?:{_KEYS_RE})[\"']?\s*:", re.I)
_NESTED_QUESTION = re.compile(rf"\{{[^{{}}]*[\"']?(?:{_KEYS_RE})[\"']?\s*:", re.I)
LIST_KEYS = ("questions", "mcqs", "items", "qa", "qas", "data", "results")

# Plain-text fallback: "1. What colour ...?" / "Q: ..." then "A) red" lines then "Answer: B".
_TEXT_OPTION = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])\s*[\).:])\s*(.+?)\s*$")
_TEXT_ANSWER = re.compile(r"^\s*\**\s*(?:correct\s+)?answer\s*\**\s*[:：]\s*\**\s*(.+?)\s*\**\s*$", re.I)
_TEXT_QUESTION = re.compile(r"^\s*(?:\**\s*)?(?:Q(?:uestion)?\s*\d*\s*[:.)]|\d+\s*[.)])\s*(.+?)\s*\**\s*$", re.I)


class ParsedQuestions(BaseModel):
    """The MCQs read from one reply, what was rejected and why, and which near-misses were repaired."""

    mcqs: list[MCQ] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    repairs: list[str] = Field(default_factory=list)
    found: int = 0
    """How many question-like entries were seen (valid or not)."""


def _loads(text: str, repairs: list[str]) -> Any:
    """JSON, or JSON after light repairs, or a Python literal; None when none of them reads."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        pass
    fixed = _TRAILING_COMMA.sub(r"\1", text.translate(_QUOTES))
    try:
        value = json.loads(fixed)
        repairs.append("trailing commas or curly quotes")
        return value
    except (json.JSONDecodeError, ValueError):
        pass
    try:
        # Single-quoted dicts, True/None: a literal, never code (ast.literal_eval evaluates no names or calls).
        value = ast.literal_eval(fixed)
        repairs.append("python-style literal")
        return value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _balanced(text: str, start: int) -> int | None:
    """End (exclusive) of the bracketed value opening at ``start``, skipping strings; None if it never closes."""
    stack: list[str] = []
    in_str, quote, escape = False, "", False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == quote:
                in_str = False
        elif c in "\"'":
            in_str, quote = True, c
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if not stack or c != stack.pop():
                return None
            if not stack:
                return i + 1
    return None


def _objects(text: str) -> list[str]:
    """Every complete top-level-or-nested ``{...}`` in ``text`` that holds a question key, innermost excluded."""
    found = []
    i = 0
    while i < len(text):
        if text[i] == "{":
            end = _balanced(text, i)
            if end is not None:
                chunk = text[i:end]
                if _HAS_QUESTION_KEY.search(chunk):
                    inner = chunk[1:]
                    # A wrapper object ({"questions": [...]}) holds question objects: look inside instead.
                    if _NESTED_QUESTION.search(inner):
                        i += 1
                        continue
                    found.append(chunk)
                    i = end
                    continue
        i += 1
    return found


def _question_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in LIST_KEYS:
            if isinstance(lowered.get(key), list):
                return lowered[key]
        if any(k in lowered for k in QUESTION_KEYS):
            return [value]
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1:
            return lists[0]
    return None


def _get(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _options(raw: Any, repairs: list[str]) -> list[str] | None:
    if isinstance(raw, dict):
        items = sorted(((str(k).strip().strip("().").upper(), v) for k, v in raw.items()), key=lambda kv: kv[0])
        if [k for k, _ in items] == list(LETTERS[: len(items)]):
            repairs.append("options as an object")
            return [str(v) for _, v in items]
        return None
    if isinstance(raw, list) and all(isinstance(o, str | int | float) for o in raw):
        return [str(o) for o in raw]
    if isinstance(raw, str):
        lines = [m for m in (_TEXT_OPTION.match(x) for x in raw.splitlines()) if m]
        if len(lines) >= 2:
            repairs.append("options as one string")
            return [m.group(3) for m in lines]
    return None


def mcq_from_dict(raw: Any, repairs: list[str]) -> MCQ:
    """One question object to an MCQ; raises ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"not an object: {str(raw)[:60]!r}")
    d = {str(k).strip().lower(): v for k, v in raw.items()}
    question = _get(d, QUESTION_KEYS)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("no question text")
    options = _options(_get(d, OPTION_KEYS), repairs)
    if options is None:
        raise ValueError("no list of options")
    answer = _get(d, ANSWER_KEYS)
    index = _get(d, INDEX_KEYS)
    if answer is None and isinstance(index, int) and not isinstance(index, bool):
        answer = index  # an explicitly 0-based index
    elif isinstance(answer, bool) or answer is None:
        raise ValueError("no answer")
    elif isinstance(answer, int | float):
        raise ValueError(f"numeric answer {answer!r} (0- or 1-based?) where a letter was asked for")
    elif isinstance(answer, list):
        if len(answer) != 1:
            raise ValueError(f"{len(answer)} answers where exactly one was asked for")
        answer = answer[0]
    if strip_option_labels(options) != [o.strip() for o in options]:
        repairs.append("labelled options")
    kind = _get(d, KIND_KEYS)
    try:
        return MCQ.from_labelled(
            question,
            options,
            answer if isinstance(answer, int) else str(answer),
            kind=str(kind) if isinstance(kind, str) else None,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(str(err["msg"]).removeprefix("Value error, ")) from None


def _text_blocks(text: str) -> list[dict[str, Any]]:
    """Questions written as plain text: a question line, lettered option lines, an answer line."""
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        m_answer = _TEXT_ANSWER.match(line)
        m_option = _TEXT_OPTION.match(line)
        m_question = _TEXT_QUESTION.match(line)
        if m_answer and current is not None:
            current["answer"] = m_answer.group(1)
        elif m_option and current is not None and "answer" not in current:
            current["options"].append(f"{m_option.group(1) or m_option.group(2)}) {m_option.group(3)}")
        elif m_question or (line.rstrip().endswith("?") and (current is None or "answer" in current)):
            current = {"question": (m_question.group(1) if m_question else line).strip(), "options": []}
            blocks.append(current)
    return [b for b in blocks if b["options"]]


def parse_mcqs(text: str, *, k: int | None = None) -> ParsedQuestions:
    """MCQs in ``text`` (at most the first ``k`` valid ones), with problems and repairs listed."""
    result = ParsedQuestions()
    repairs: list[str] = []
    body = _THINK.sub(" ", text or "").strip()
    if not body:
        result.problems.append("empty reply")
        return result

    entries: list[Any] | None = None
    candidates: list[tuple[str, str | None]] = [(body, None)]
    fence = _FENCE.search(body)
    if fence:
        candidates.append((fence.group(1).strip(), "code fence"))
    # The outermost value starts at whichever bracket comes first ("[{...}]" is a list, not its first object).
    starts = sorted(i for i in (body.find("{"), body.find("[")) if i >= 0)
    for start in starts:
        end = _balanced(body, start)
        if end is not None:
            candidates.append((body[start:end], "text around the JSON"))
    for candidate, repair in candidates:
        value = _loads(candidate, repairs)
        found = _question_list(value) if value is not None else None
        if found is not None:
            entries = found
            if repair:
                repairs.append(repair)
            if isinstance(value, list):
                repairs.append("bare list")
            elif len(found) == 1 and found[0] is value:
                repairs.append("a single question object")
            elif "questions" not in value:
                repairs.append("other key names")
            break
        repairs.clear()
    if entries is None:
        salvaged = []
        for chunk in _objects(body):
            value = _loads(chunk, repairs)
            if isinstance(value, dict):
                salvaged.append(value)
        if salvaged:
            entries = salvaged
            repairs.append("incomplete JSON: kept the complete questions")
    if entries is None:
        blocks = _text_blocks(body)
        if blocks:
            entries = blocks
            repairs.append("plain-text questions")
    if entries is None:
        result.problems.append("no JSON object or list of questions found")
        return result

    result.found = len(entries)
    for i, raw in enumerate(entries):
        try:
            mcq = mcq_from_dict(raw, repairs)
        except ValueError as exc:
            result.problems.append(f"question {i + 1}: {exc}")
            continue
        if k is not None and len(result.mcqs) >= k:
            result.problems.append(f"question {i + 1}: more than the {k} asked for, ignored")
            continue
        result.mcqs.append(mcq)
    result.repairs = list(dict.fromkeys(repairs))
    return result
