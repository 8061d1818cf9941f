"""Cheap checks run before any model is asked: option sanity and duplicate questions within an item.

- Options: at least ``min_options`` (CapRL's questions have 4; two options make a coin flip that the
  without-media leg passes half the time), no two options equal after normalisation ("Red." and "red"), and a
  gold option that exists and is not empty.
- Duplicates: the same question text after normalisation (case, punctuation, spacing) is an exact duplicate.
  A near duplicate reads almost the same (character similarity >= ``near_duplicate``) *and* has the same gold
  answer: two questions that differ in one word but have different answers ("the small circle" / "the large
  circle") ask different things and both stay. The first occurrence is kept.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

from caprl.schema import MCQ

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, accents folded, punctuation dropped, spacing collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def option_problem(mcq: MCQ, min_options: int = 3) -> str | None:
    """Why ``mcq``'s options are unusable (``too_few_options``, ``duplicate_options``, ``gold_missing``), or None."""
    if not 0 <= mcq.gold < len(mcq.options) or not normalise(mcq.options[mcq.gold]):
        return "gold_missing"
    if len(mcq.options) < min_options:
        return "too_few_options"
    seen = [normalise(o) for o in mcq.options]
    if len(set(seen)) != len(seen) or "" in seen:
        return "duplicate_options"
    return None


def similarity(a: str, b: str) -> float:
    """Character-level similarity of two normalised texts, in [0, 1]."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def find_duplicates(mcqs: list[MCQ], near_duplicate: float = 0.9) -> dict[int, tuple[str, int]]:
    """``{index: (reason, index of the question it repeats)}`` for every question after the first of its kind;
    reason is ``duplicate`` or ``near_duplicate``. ``near_duplicate > 1`` turns near-duplicate detection off."""
    found: dict[int, tuple[str, int]] = {}
    kept: list[tuple[int, str, str]] = []  # (index, normalised question, normalised gold)
    for i, mcq in enumerate(mcqs):
        q, gold = normalise(mcq.question), normalise(mcq.gold_text)
        for j, kq, kgold in kept:
            if q == kq:
                found[i] = ("duplicate", j)
                break
            if gold == kgold and near_duplicate <= 1 and similarity(q, kq) >= near_duplicate:
                found[i] = ("near_duplicate", j)
                break
        else:
            kept.append((i, q, gold))
    return found
