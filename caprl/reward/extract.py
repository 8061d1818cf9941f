"""Read the chosen option out of a reader's free-text answer.

The reference takes the first capital letter of the output, which misreads "I think it is B" as I. Here an answer
is found by, in order: a ``\\boxed{}`` answer (read by these same rules), an explicit statement ("The answer is
(C)", "Answer: C", "I choose C"), a bare decorated letter ("C", "(C)", "**C**"), a leading label ("C) blue",
"C. blue", "C, because ..."), a unique bold/bracketed letter, a unique option text ("blue"), then a lone letter at
the very end ("In my view, B"). Anything else is ``None``: unparseable, counted as wrong by the caller, never
guessed.

Lower-case letters are read where they can only be a label, as lmms-eval's MVBench/SEED/MMVU rules read them: the
whole output ("b"), a leading "b)", "(b)" or "b.", or right after "answer is"/"answer:" with nothing but
punctuation after it ("The answer is b."). Elsewhere "a" is the article and "i" the pronoun: "a red circle" is
no answer A.

>>> extract_choice("The answer is (B).", ["red", "blue", "green"])
'B'
>>> extract_choice("I think it's the green one", ["red", "blue", "green"])
'C'
>>> extract_choice("I cannot tell.", ["red", "blue"]) is None
True
>>> extract_choice("answer: b", ["red", "blue"]), extract_choice("a circle", ["red", "blue"])
('B', None)
"""

from __future__ import annotations

import re

from caprl.schema import LETTERS

# Keywords match in any case; the letter itself must be a capital ("the answer is a red circle" is no answer A).
_STATEMENT = re.compile(
    r"(?i:answer|option|choice|choose|chose|select|pick|it\s+is|it's)(?i:\s+(?:is|would\s+be|should\s+be|will\s+be))?"
    r"\s*[:：=]?\s*(?i:option\s+|letter\s+)?[\*\(\[\"'`]*\s*([A-Z])\s*(?![A-Za-z0-9'])"
)
# Lower case after "answer is"/"answer:" only when decorated or followed by punctuation or the end: "The answer is
# b." is B, "The answer is a circle" is not A.
_LOWER_STATEMENT = re.compile(
    r"\b(?i:answer)\b\s*(?:(?i:is|would\s+be|should\s+be|will\s+be)\s*[:：=]?|[:：=])\s*"
    r"(?:[\*\(\[\"'`]+\s*([a-z])\s*[\*\)\]\"'`]|([a-z])(?=[\.\!,;\)]|\s*$))"
)
# The whole output is one letter, in either case: nothing else is there for an "a" to be an article of. A leading
# colon is the continuation of a prompt that ends in the lead-in "The answer is" (": b").
_BARE = re.compile(r"^[\s\*\(\[\"'`:：]*([A-Za-z])[\s\*\)\]\.\:\"'`,!]*$")
_LEADING_LABEL = re.compile(
    r"^[\s\*\"'`]*(?:"
    r"\(([A-Z])\)|\[([A-Z])\]|([A-Z])\s*[\)\.:：）]"  # "(C)", "[C]", "C)", "C.", "C:"
    r"|(?!I,)([A-Z]),(?=\s+[a-z])"  # "C, because ...", but not the pronoun in "I, for one, ..."
    r"|\(([a-z])\)|\[([a-z])\]|([a-z])[\)\.）]"  # lower case only with its bracket or period: "b)", "(b)", "b."
    r")(?:\s|\*|$)"
)
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

    # A boxed answer is the reader's own mark of its conclusion (math-tuned readers end with one); its content is
    # read by the rules below ("B", "(B)", "b", "blue"). An unreadable box leaves the rest of the text to decide.
    in_box = boxed(text)
    if in_box is not None:
        found = extract_choice(in_box, options, labels)  # strictly shorter than text: the recursion ends
        if found is not None:
            return found

    # An explicit statement wins; take the last one, as readers that reason tend to conclude at the end.
    stated = [(m.start(), m.group(1)) for m in _STATEMENT.finditer(text)]
    stated += [(m.start(), _first(m).upper()) for m in _LOWER_STATEMENT.finditer(text)]
    statements = [letter for _, letter in sorted(stated) if letter in valid]
    if statements:
        return statements[-1]

    m = _BARE.match(text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()

    m = _LEADING_LABEL.match(text)
    if m and _first(m).upper() in valid:
        return _first(m).upper()

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


_BOXED = re.compile(r"\\boxed\s*\{")
_TEXT = re.compile(r"^\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}$")


def boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (braces balanced, a ``\\text{}`` wrapper dropped), or
    None when there is none, or it is empty or unclosed.

    >>> boxed(r"First \\boxed{2}, then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> boxed(r"\\boxed{\\text{B}}")
    'B'
    """
    found = list(_BOXED.finditer(text or ""))
    if not found:
        return None
    start = found[-1].end()
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            content = text[start:i].strip()
            wrapped = _TEXT.match(content)
            content = wrapped.group(1).strip() if wrapped else content
            return content or None
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
