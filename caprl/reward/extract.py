"""Read the chosen option out of a reader's free-text answer.

The reference takes the first capital letter of the output, which misreads "I think it is B" as I. Here an answer
is found by, in order: an explicit statement ("The answer is (C)", "Answer: C", "I choose C"), a bare decorated
letter ("C", "(C)", "**C**"), a leading label ("C) blue", "C. blue"), a unique bold/bracketed letter, a unique
option text ("blue"), then a lone letter at the very end ("In my view, B"). Anything else is ``None``:
unparseable, counted as wrong by the caller, never guessed.

>>> extract_choice("The answer is (B).", ["red", "blue", "green"])
'B'
>>> extract_choice("I think it's the green one", ["red", "blue", "green"])
'C'
>>> extract_choice("I cannot tell.", ["red", "blue"]) is None
True
"""

from __future__ import annotations

import re

from caprl.schema import LETTERS

# Keywords match in any case; the letter itself must be a capital ("the answer is a red circle" is no answer A).
_STATEMENT = re.compile(
    r"(?i:answer|option|choice|choose|chose|select|pick|it\s+is|it's)(?i:\s+(?:is|would\s+be|should\s+be|will\s+be))?"
    r"\s*[:：=]?\s*(?i:option\s+|letter\s+)?[\*\(\[\"'`]*\s*([A-Z])\s*(?![A-Za-z0-9'])"
)
_BARE = re.compile(r"^[\s\*\(\[\"'`]*([A-Z])[\s\*\)\]\.\:\"'`,!]*$")
_LEADING_LABEL = re.compile(r"^[\s\*\"'`]*(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])\s*[\)\.:：）])(?:\s|\*|$)")
_DECORATED = re.compile(r"\*\*\s*\(?([A-Z])\)?\s*\*\*|\(([A-Z])\)|\[([A-Z])\]")
_TRAILING = re.compile(r"[\s,:;]\(?([A-Z])\)?[\s\.\!]*$")
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def _first(m: re.Match) -> str:
    return next(g for g in m.groups() if g)


def first_capital_letter(text: str, letters: str = "ABCDEFGHI") -> str | None:
    """CapRL's parse: the first of ``letters`` anywhere in ``text`` (so "I think it is B" reads as I), or None.

    Kept for comparability with CapRL's numbers (``RewardConfig.answer_parse = "first_letter"``); ``extract_choice``
    is the sound default."""
    return next((c for c in text or "" if c in letters), None)


def extract_choice(text: str, options: list[str], letters: str | None = None) -> str | None:
    """The letter of the option ``text`` chooses among ``options`` (labelled ``letters``, default A, B, ... in
    order), or None."""
    labels = letters if letters is not None else LETTERS[: len(options)]
    if len(labels) != len(options):
        raise ValueError(f"{len(labels)} letters for {len(options)} options")
    valid = set(labels)
    text = _THINK.sub(" ", text or "").strip()
    if not text:
        return None

    # An explicit statement wins; take the last one, as readers that reason tend to conclude at the end.
    statements = [m.group(1) for m in _STATEMENT.finditer(text) if m.group(1) in valid]
    if statements:
        return statements[-1]

    m = _BARE.match(text)
    if m and m.group(1) in valid:
        return m.group(1)

    m = _LEADING_LABEL.match(text)
    if m and _first(m) in valid:
        return _first(m)

    decorated = {_first(m) for m in _DECORATED.finditer(text)} & valid
    if len(decorated) == 1:
        return decorated.pop()

    by_text = _match_option_text(text, options)
    if by_text is not None:
        return labels[by_text]

    m = _TRAILING.search(text)  # "In my view, B"
    if m and m.group(1) in valid:
        return m.group(1)
    return None


def _match_option_text(text: str, options: list[str]) -> int | None:
    lowered = text.lower().strip(" .!\"'`*")
    exact = [i for i, o in enumerate(options) if o.lower() == lowered]
    if len(exact) == 1:
        return exact[0]
    found = [i for i, o in enumerate(options) if re.search(rf"(?<![\w]){re.escape(o.lower())}(?![\w])", text.lower())]
    # An option that is part of another found option ("red" inside "dark red") is not a separate mention.
    found = [i for i in found if not any(j != i and options[i].lower() in options[j].lower() for j in found)]
    if len(found) == 1:
        return found[0]
    return None
