"""Reading answers out of a reader's free text: short answers for open questions and [start, end] spans.

(Multiple-choice answers go through ``caprl.reward.extract.extract_choice``.) ``None`` means unparseable: the
answer scores 0 and is counted, never guessed.

>>> short_answer("The answer is 42.")
'42'
>>> span("The event happens from 00:12 to 00:20.")
(12.0, 20.0)
"""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_LEAD = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|：)\s*", re.I)
_TIME = re.compile(r"(?<![\d.:])(\d+(?::\d{1,2}){0,2}(?:\.\d+)?)(?![\d:])")


def short_answer(text: str) -> str | None:
    """The answer phrase: after an "answer is"/"Answer:" lead-in when there is one, its first line, without
    surrounding quotes, bold markers or a final period."""
    text = _THINK.sub(" ", text or "").strip()
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


def span(text: str) -> tuple[float, float] | None:
    """The first two times in the answer as (start, end), in order; None when it holds fewer than two."""
    text = _THINK.sub(" ", text or "")
    times = [seconds(m.group(1)) for m in _TIME.finditer(text)]
    if len(times) < 2:
        return None
    start, end = times[0], times[1]
    return (start, end) if start <= end else (end, start)


def format_span(value: tuple[float, float]) -> str:
    return f"{value[0]:g}-{value[1]:g}"


def parse_span(text: str) -> tuple[float, float]:
    start, end = text.split("-", 1)
    return float(start), float(end)
