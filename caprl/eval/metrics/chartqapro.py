"""ChartQAPro's mixed metric, following the benchmark's released evaluation script.

The gold (the last turn's answer for conversational questions) and the prediction are split into elements when
they are written as lists (``[a, b]``; unquoted gold lists are quoted first); elements are compared pairwise by
position, and a missing or extra element scores 0. Per element: when the item's year flag says the answer is a
year, an exact (case-insensitive) match; else, when both parse as numbers (a trailing ``%`` dropped, no
thousands separators), right within 5% relative error (a 0 gold needs a 0); else ANLS with tau 0.5. The score is
the mean over elements. Gold and prediction first lose surrounding periods and newlines.

The released script computes "exact match for Multi Choice and Fact Checking" but never applies it; we do the
same by default (``exact_choice_types=False``), so numbers compare with published ones.

>>> chartqapro_score("[2019, 2020]", "[2019, 2021]", ["YES"])
0.5
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from caprl.eval.metrics.anls import anls_package

MAX_RELATIVE_CHANGE = 0.05
CHOICE_TYPES = ("Multi Choice", "Fact Checking")


def fix_list_format(item: str) -> Any:
    """``[a, b]`` written without quotes becomes the list ``['a', 'b']``; anything else is returned as it is."""
    m = re.match(r"^\[(.*)\]$", item.strip())
    if not m:
        return item
    quoted = re.sub(r"(?<!['\w])(\w[^,]*?)(?!['\w])", r"'\1'", m.group(1))
    try:
        return ast.literal_eval(f"[{quoted}]")  # a literal only: never eval()
    except (SyntaxError, ValueError):
        return item


def parse_to_list(text: str) -> list[str] | None:
    try:
        parsed = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(parsed, list):
        return [str(x).strip(" '") for x in parsed]
    return None


def _to_float(text: str) -> float | None:
    try:
        return float(text.strip().strip("%"))
    except ValueError:
        return None


def element_score(target: str, prediction: str, max_relative_change: float = MAX_RELATIVE_CHANGE) -> float:
    t = target.strip().strip("%").strip()
    p = prediction.strip().strip("%").strip()
    tf, pf = _to_float(t), _to_float(p)
    if tf is not None and pf is not None:
        if tf == 0.0:
            return float(pf == 0.0)
        return float(abs(pf - tf) / abs(tf) <= max_relative_change)
    return anls_package(p.lower(), [t.lower()])


def chartqapro_score(
    target: str,
    prediction: str,
    year_flags: Sequence[str] | None = None,
    *,
    always_exact: bool = False,
    max_relative_change: float = MAX_RELATIVE_CHANGE,
) -> float:
    """Score of one (already period/newline-stripped) prediction against one gold answer."""
    t_list = parse_to_list(str(fix_list_format(target))) or [str(target)]
    p_list = parse_to_list(str(prediction)) or [str(prediction)]
    flags = list(year_flags or [])
    if flags and len(flags) < len(t_list):
        flags = flags * len(t_list)
    scores = []
    for i in range(max(len(t_list), len(p_list))):
        if i >= len(t_list) or i >= len(p_list):
            scores.append(0.0)
            continue
        is_year = i < len(flags) and str(flags[i]).upper() == "YES"
        if is_year or always_exact:
            scores.append(float(t_list[i].strip().lower() == p_list[i].strip().lower()))
        else:
            scores.append(element_score(t_list[i], p_list[i], max_relative_change))
    return sum(scores) / len(scores) if scores else 0.0


def chartqapro_item_score(
    prediction: str,
    answers: Sequence[str],
    question_type: str | None,
    year_flags: Sequence[str] | None,
    *,
    exact_choice_types: bool = False,
) -> float:
    """The benchmark's per-question score: last gold answer, year flags of the last turn for conversations."""
    gold = str(answers[-1]).strip(".").strip("\n")
    pred = prediction.strip(".").strip("\n")
    flags = list(year_flags or [])
    if question_type == "Conversational":
        flags = flags[-1:]
    exact = exact_choice_types and question_type in CHOICE_TYPES
    return chartqapro_score(gold, pred, flags, always_exact=exact)
