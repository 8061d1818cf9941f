"""Reading answers out of a reader's free text: short answers for open questions and [start, end] spans.

(Multiple-choice answers go through ``caprl.reward.extract.extract_choice``.) ``None`` means unparseable: the
answer scores 0 and is counted, never guessed.

>>> short_answer("The answer is 42.")
'42'
>>> short_answer("The answer is: 42")
'42'
>>> short_answer(r"So the total is \\boxed{42}.")
'42'
>>> span("The event happens from 00:12 to 00:20.")
(12.0, 20.0)
>>> span("The event happens in 20.4 - 10.6 seconds.")  # reversed: kept, and scored 0
(20.0, 11.0)
"""

from __future__ import annotations

import re

from caprl.reward.extract import boxed

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# "is" may carry its own colon ("The answer is: 3"): the colon belongs to the lead-in, not to the answer.
_LEAD = re.compile(r"(?:final\s+answer|answer)\s*(?:is\s*[:：]?|[:：])\s*", re.I)


def without_thinking(text: str) -> str:
    """The answer with any ``<think>`` block removed, stripped."""
    return _THINK.sub(" ", text or "").strip()


def short_answer(text: str) -> str | None:
    """The answer phrase: a ``\\boxed{}`` answer when there is one (math-tuned readers conclude with it); else
    after an "answer is"/"Answer:" lead-in when there is one, its first line, without surrounding quotes, bold
    markers or a final period."""
    text = _THINK.sub(" ", text or "").strip()
    in_box = boxed(text)
    if in_box is not None:
        return in_box
    leads = list(_LEAD.finditer(text))
    if leads:
        text = text[leads[-1].end() :]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    answer = lines[0].strip().strip("*\"'`").strip()
    answer = answer.rstrip(".").rstrip()
    return answer or None


def seconds(token: str) -> float:
    """``"75"``, ``"1:15"``, ``"01:15.5"`` or ``"1:01:15"`` in seconds."""
    value = 0.0
    for part in token.split(":"):
        value = value * 60 + float(part)
    return value


# TimeLens's answer reading (timelens/utils.py, extract_time), in its order: clock times (h:mm:ss or m:ss), taken
# in pairs; else "a - b" or "a to b" ranges; else bare numbers, in pairs.
_CLOCK = re.compile(r"\b(\d{1,2}:\d{2}:\d{2}(?:\.\d+)?|\d{1,2}:\d{2}(?:\.\d+)?)\b")
_RANGES = (re.compile(r"(\d+\.?\d*)\s*-\s*(\d+\.?\d*)"), re.compile(r"(\d+\.?\d*)\s+to\s+(\d+\.?\d*)"))
_NUMBER = re.compile(r"\b(\d+\.\d+|\d+)\b")


def spans(text: str) -> list[tuple[float, float]]:
    """Every (start, end) pair in the answer, read as TimeLens's official evaluation reads it (a reasoning block in
    ``<think>`` tags is dropped first). Pairs keep their order: a reversed span stays reversed."""
    text = _THINK.sub(" ", text or "").lower()
    clocks = _CLOCK.findall(text)
    clocks = clocks[: len(clocks) // 2 * 2]
    if clocks:
        values = [seconds(c) for c in clocks]
        return list(zip(values[::2], values[1::2], strict=True))
    for pattern in _RANGES:
        found = pattern.findall(text)
        if found:
            return [(float(a), float(b)) for a, b in found]
    numbers = _NUMBER.findall(text)
    numbers = numbers[: len(numbers) // 2 * 2]
    values = [float(n) for n in numbers]
    return list(zip(values[::2], values[1::2], strict=True))


def span(text: str) -> tuple[float, float] | None:
    """The predicted span: the first pair, rounded to whole seconds as TimeLens's evaluation rounds it (Python's
    ``round``, halves to even); None when the answer holds no pair."""
    found = spans(text)
    if not found:
        return None
    start, end = found[0]
    return float(round(start)), float(round(end))


def format_span(value: tuple[float, float]) -> str:
    return f"{value[0]:g}-{value[1]:g}"


def parse_span(text: str) -> tuple[float, float]:
    start, end = text.split("-", 1)
    return float(start), float(end)
