"""Cheap checks run before any model is asked: option sanity and duplicate questions within an item.

- Options: at least ``min_options`` (CapRL's questions have 4; two options make a coin flip that the
  without-media leg passes half the time), no two options equal after normalisation ("Red." and "red"), and a
  gold option that exists and is not empty.
- Duplicates: the same question text after normalisation (case, punctuation, spacing) is an exact duplicate.
  A near duplicate says the same thing in other filler words or spelling and has the same gold answer: its
  content words (filler such as "the", "is", "what" dropped, plurals folded) are the same words in the same
  order, where two words count as the same when they are spelt almost alike (character similarity >=
  ``near_duplicate``: "colour"/"color", a typo) and words with digits must match exactly. So "What is the colour
  of the circle?" repeats "What colour is the circle?", while "How many blue squares ...?" / "How many black
  squares ...?" and "Is the circle above the square?" / "Is the square above the circle?" stay: one word or the
  order changes what is asked, even when the answers happen to agree. The first occurrence is kept.
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
    """Character-level similarity of two texts, in [0, 1]."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


# Words that carry no meaning of their own in a question about an image.
# fmt: off
FILLER = frozenset((
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "in", "on", "at", "to", "this", "that",
    "these", "those", "there", "here", "it", "its", "what", "which", "does", "do", "did", "image", "picture",
    "photo", "video", "shown", "show", "shows", "visible", "can", "you", "see",
))
# fmt: on


def content_words(text: str) -> list[str]:
    """The question's meaningful words in order: normalised, filler dropped, a plural "s" folded."""
    words = [w for w in normalise(text).split() if w not in FILLER]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def _same_word(a: str, b: str, threshold: float) -> bool:
    if a == b:
        return True
    if any(c.isdigit() for c in a + b) or threshold > 1:
        return False
    return similarity(a, b) >= threshold


def says_the_same(a: str, b: str, threshold: float = 0.8) -> bool:
    """Whether two questions ask the same thing in other words (see the module docstring)."""
    wa, wb = content_words(a), content_words(b)
    return len(wa) == len(wb) and all(_same_word(x, y, threshold) for x, y in zip(wa, wb, strict=True))


def find_duplicates(mcqs: list[MCQ], near_duplicate: float = 0.8) -> dict[int, tuple[str, int]]:
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
            if near_duplicate <= 1 and gold == kgold and says_the_same(q, kq, near_duplicate):
                found[i] = ("near_duplicate", j)
                break
        else:
            kept.append((i, q, gold))
    return found
