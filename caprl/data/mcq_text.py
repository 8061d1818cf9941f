"""MCQs written as text, read the way the public CapRL code and data write them.

Two shapes reach caprl:

- **A question string with its options inside** (CapRL's ``/get_reward`` bodies, v1 training rows, the QA curation
  files): the question, then one option per line, e.g. ``"What colour is it?\\n   - A) red\\n   - B) blue"``.
  Lines may carry a bullet (``-``, ``*``, ``•``) before the label; labels may read ``A)``, ``A.``, ``A:``,
  ``(A)``, ``[A]`` or the same in lower case (all lines alike); options may be unlabelled bullets; a list may
  also run inline (``"Which? (A) cat (B) dog"``).
- **A question and a list of choices** (verl ground truth): bare or labelled in any of those styles.

In a question string, a label in front of already labelled options is removed too: CapRL++'s reward function puts
its own ``A)`` in front of CapRL-Video-QA choices written ``"A. Black"``, so its servers see ``"   - A) A. Black"``
(all options must carry such an inner label, in order and in one style, else they are content).

An option that says the question cannot be answered from the caption (CapRL's ``"Can not answer based on the
caption"``, under whatever letter, or a wording variant) is dropped: the reward adds its own such option
(``RewardConfig.unanswerable_*``), and keeping the data's would show the reader two. A gold answer pointing at it
cannot be scored and is an error.

Nothing is guessed: text whose options cannot be read raises ``MCQTextError`` saying which part and why.

>>> mcq_from_text("What colour is it?\\n   - A) red\\n   - B) blue\\n   - C) Can not answer based on the caption", "B")
MCQ(question='What colour is it?', options=['red', 'blue'], gold=1, kind=None)
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from caprl.schema import LETTERS, MCQ, parse_gold, strip_option_labels


class MCQTextError(ValueError):
    """An MCQ that cannot be read: ``field`` is ``question``, ``options`` or ``answer`` (empty: the whole ground
    truth), under ``path`` (``[2]``: the third question of a ground truth); ``reason`` says why."""

    def __init__(self, field: str, reason: str, path: str = ""):
        self.field, self.reason, self.path = field, reason, path
        super().__init__(f"{self.where}: {reason}" if self.where else reason)

    @property
    def where(self) -> str:
        """``[2].options``, ``answer``, or empty for the whole ground truth."""
        return ".".join(p for p in (self.path, self.field) if p)

    def field_path(self, prefix: str) -> str:
        """The field under ``prefix``: ``reward_model.ground_truth[1].options``."""
        where = self.where
        return prefix + ("" if not where or where.startswith("[") else ".") + where

    def under(self, path: str) -> MCQTextError:
        return MCQTextError(self.field, self.reason, path + self.path)


# ------------------------------------------------------------------------------------------ "cannot answer"

# Says the question cannot be settled from the caption/description, in the wordings CapRL data and prompts use
# ("Can not answer based on the caption", "Cannot be answered from the caption", "The caption does not give enough
# information", ...). It must name the caption or description: "Cannot be determined" alone can be a real answer.
_SOURCE = r"(?:caption|description|text)"
_UNANSWERABLE = re.compile(
    r"^\s*(?:"
    rf"(?:it\s+)?(?:can\s*not|can't|cannot|could\s*not|unable\s+to)\s+(?:be\s+)?"
    rf"(?:answer(?:ed)?|determine[d]?|tell|know|infer(?:red)?|say)\b.*\b{_SOURCE}s?\b"
    rf"|(?:not\s+answerable|unanswerable|no\s+answer)\b.*\b{_SOURCE}s?\b"
    rf"|(?:the\s+)?{_SOURCE}\s+(?:does\s+not|doesn't|do\s+not|did\s+not)\s+"
    r"(?:give|provide|contain|say|mention|include|state|show)\b.*"
    rf"|(?:not\s+enough|insufficient)\s+information\b.*\b{_SOURCE}s?\b"
    r")\s*[.!]?\s*$",
    re.I,
)


def is_unanswerable(option: str) -> bool:
    """Whether ``option`` says the question cannot be answered from the caption (any CapRL wording)."""
    return bool(_UNANSWERABLE.match(option))


# ------------------------------------------------------------------------------------ options in one string

# An option line: optional bullet, then a label "A)", "A.", "A:", "(A)", "[A]" (full-width closers too), any case.
# "A." / "A:" need whitespace (or the line's end) after them, so "U.S." or "3:30" never count.
_LINE_OPTION = re.compile(
    r"^[ \t\u3000]*(?:[-*•·][ \t]*)?"
    r"(?:(?P<open>[(（\[])(?P<q>[A-Za-z])[)）\]]|(?P<l>[A-Za-z])(?P<c>[)）：]|[.:](?=\s|$)))"
    r"[ \t\u3000]*(?P<text>.*?)[ \t\u3000]*$"
)
_BULLET = re.compile(r"^[ \t\u3000]*[-*•·][ \t]+(?P<text>\S.*?)[ \t\u3000]*$")
_SAME_STYLE = {"）": ")", "：": ":", "（": "(", "[": "["}  # full-width brackets count as their ASCII twins

# Inline labels: "(A)", "（A）", "[A]" anywhere, or "A)", "A.", "A:", "A）" after whitespace, the start or CJK
# punctuation ("？A）"); capitals only, since "a." inside prose is common.
_INLINE_LABEL = re.compile(
    r"[(（](?P<p>[A-Z])[)）]|\[(?P<b>[A-Z])\]"
    r"|(?<![^\s\u3000-\u303f\uff00-\uffef])(?P<l>[A-Z])(?P<c>[)）：]|[.:](?=\s|$))"
)
_OPTIONS_HEADER = re.compile(r"(?:^|\n)\s*(?:options|choices)\s*[:：]?\s*$", re.I)


@dataclass(frozen=True)
class _Label:
    index: int  # line number (line mode) or character offset (inline mode)
    end: int
    letter: str  # upper case
    style: str
    text: str = ""


def _chains(labels: list[_Label]) -> list[_Label]:
    """Longest run A, B, C, ... in order and in one label style; ties go to the later run (options come last)."""
    best: list[_Label] = []
    for i, first in enumerate(labels):
        if first.letter != "A":
            continue
        chain = [first]
        for lab in labels[i + 1 :]:
            if lab.style == first.style and lab.letter == LETTERS[len(chain)]:
                chain.append(lab)
        if len(chain) >= len(best):
            best = chain
    return best if len(best) >= 2 else []


def _line_labels(lines: list[str]) -> list[_Label]:
    out = []
    for i, line in enumerate(lines):
        m = _LINE_OPTION.match(line)
        if not m:
            continue
        letter = m.group("q") or m.group("l")
        bracket = m.group("open")
        style = _SAME_STYLE.get(bracket, bracket) if bracket else _SAME_STYLE.get(m.group("c"), m.group("c"))
        case = "upper" if letter.isupper() else "lower"
        out.append(_Label(i, i, letter.upper(), f"{style}{case}", m.group("text")))
    return out


def _finish(question: str, trailing: str = "") -> str:
    question = _OPTIONS_HEADER.sub("", question).strip()
    if trailing:
        question = f"{question}\n{trailing}" if question else trailing
    return question


def _split_lines(text: str) -> tuple[str, list[str]] | None:
    """Options one per line (labelled, or unlabelled bullets after the question); None when there are none."""
    lines = text.split("\n")
    labels = _line_labels(lines)
    chain = _chains(labels)
    if chain:
        # The "cannot answer" line may carry any letter (CapRL's servers write F after A-C): after the run, it is
        # an option too (dropped later), not text appended to the question.
        for lab in labels:
            if lab.index > chain[-1].index and lab.style == chain[0].style and is_unanswerable(lab.text):
                if any(lines[i].strip() for i in range(chain[-1].index + 1, lab.index)):
                    break
                chain.append(lab)
        members = {lab.index for lab in chain}
        for i in range(chain[0].index, chain[-1].index + 1):
            if i not in members and lines[i].strip():
                before = next(lab.letter for lab in reversed(chain) if lab.index < i)
                raise MCQTextError(
                    "question",
                    f"line {i + 1} ({lines[i].strip()[:60]!r}) sits among the options after {before}) but is not "
                    "an option; write each option on one line",
                )
        question = "\n".join(lines[: chain[0].index])
        trailing = "\n".join(lines[chain[-1].index + 1 :]).strip()
        return _finish(question, trailing), [lab.text for lab in chain]
    # Unlabelled: the question, then nothing but bullet lines to the end.
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    start = end
    while start and _BULLET.match(lines[start - 1]):
        start -= 1
    question = "\n".join(lines[:start])
    if end - start < 2 or not question.strip():
        return None
    return _finish(question), [m.group("text") for m in map(_BULLET.match, lines[start:end]) if m]


def _split_inline(text: str) -> tuple[str, list[str]] | None:
    labels = []
    for m in _INLINE_LABEL.finditer(text):
        letter = m.group("p") or m.group("b") or m.group("l")
        style = "()" if m.group("p") else "[]" if m.group("b") else _SAME_STYLE.get(m.group("c"), m.group("c"))
        labels.append(_Label(m.start(), m.end(), letter, style))
    chain = _chains(labels)
    if not chain:
        return None
    options = [text[a.end : b.index] for a, b in zip(chain, chain[1:], strict=False)] + [text[chain[-1].end :]]
    # Inline lists often separate options with commas or semicolons: "A. red, B. blue".
    return _finish(text[: chain[0].index]), [o.strip().rstrip(",;，；").strip() for o in options]


def split_question_options(text: str) -> tuple[str, list[str]]:
    """Split a question string into ``(question, options)``, each option with its own label removed.

    Options one per line win over inline ones: labelled lines A, B, C, ... (one label style and case, after an
    optional bullet), else unlabelled bullet lines closing the text, else an inline run of labels. Text after the
    last option line (e.g. "Answer with the letter.") is appended to the question. ``MCQTextError`` (field
    ``question``) when no two options can be read, or a line between options is not one.

    >>> split_question_options("What is it?\\n   - A) cat\\n   - B) dog")
    ('What is it?', ['cat', 'dog'])
    >>> split_question_options("What is it? (A) cat (B) dog")
    ('What is it?', ['cat', 'dog'])
    """
    found = _split_lines(text) or _split_inline(text)
    if found is None:
        raise MCQTextError(
            "question",
            "could not find the options: expected two or more lines labelled A, B, ... (e.g. '   - A) red'), "
            "bullet lines, or an inline list '(A) red (B) blue'",
        )
    return found


# ------------------------------------------------------------------------------------------- building MCQs


# A label at the start of an option that the split already took one label from ("A) A. Black" -> "A. Black").
# "A." / "A:" need whitespace after them, so "A.M." is content.
_INNER_LABEL = re.compile(r"^\s*(?P<label>\([A-Z]\)|\[[A-Z]\]|[A-Z](?:[)）]|[.:：](?=\s)))\s*(?P<text>.*)$", re.S)


def _strip_inner_labels(options: list[str]) -> list[str]:
    """Drop a second label when every option has one, in order A, B, ... and in one style; else keep them."""
    found = [_INNER_LABEL.match(o) for o in options]
    if not all(found):
        return options
    labels = [m.group("label") for m in found]  # type: ignore[union-attr]
    letters = [re.search(r"[A-Z]", label).group() for label in labels]  # type: ignore[union-attr]
    styles = {label.replace(letter, "X") for label, letter in zip(labels, letters, strict=True)}
    if letters != list(LETTERS[: len(options)]) or len(styles) != 1:
        return options
    return [m.group("text").strip() for m in found]  # type: ignore[union-attr]


_FIELDS = {"question": "question", "options": "options", "gold": "answer"}


def _build(question: str, options: list[str], answer: str | int, kind: str | None) -> MCQ:
    try:
        gold = parse_gold(answer, options)
    except ValueError as exc:
        raise MCQTextError("answer", str(exc)) from None
    drop = [i for i, o in enumerate(options) if is_unanswerable(o)]
    if gold in drop:
        raise MCQTextError(
            "answer",
            f"the gold answer {answer!r} is the option {options[gold]!r}, which says the question cannot be answered "
            "from the caption; such a question gives no reward signal (the reward adds that option itself)",
        )
    kept = [o for i, o in enumerate(options) if i not in drop]
    try:
        return MCQ(question=question, options=kept, gold=gold - sum(i < gold for i in drop), kind=kind)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _FIELDS.get(str(first["loc"][0]) if first["loc"] else "", "options")
        raise MCQTextError(field, first["msg"].removeprefix("Value error, ")) from None


def mcq_from_choices(question: str, choices: Sequence[str], answer: str | int, kind: str | None = None) -> MCQ:
    """An MCQ from a question and its choices (all labelled in order in one of the styles above, or bare); the
    gold ``answer`` is a letter, an index or the option's text. A "cannot answer from the caption" choice is
    dropped (see the module docstring)."""
    return _build(question, strip_option_labels(list(choices)), answer, kind)


def mcq_from_text(text: str, answer: str | int, kind: str | None = None) -> MCQ:
    """An MCQ from a question string with its options inside (see ``split_question_options``) and the gold; a
    label in front of already labelled options (``"   - A) A. Black"``) is removed too."""
    question, options = split_question_options(text)
    return _build(question, _strip_inner_labels(options), answer, kind)


def question_string(mcq: MCQ) -> str:
    """``mcq`` written as CapRL's clients write it: the question on one line, then ``"   - A) text"`` lines."""
    lines = [" ".join(mcq.question.split())]
    lines += [f"   - {LETTERS[i]}) {o}" for i, o in enumerate(mcq.options)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- ground truth


def parse_literal(text: str) -> Any:
    """Parse a JSON or Python-literal string (``ast.literal_eval``; never ``eval``); ValueError when it is neither."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        preview = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(f"not valid JSON or a Python literal ({type(exc).__name__}): {preview!r}") from None


def plain(value: Any) -> Any:
    """numpy arrays and scalars (how verl and pyarrow hand columns over) as plain Python values."""
    return value.tolist() if hasattr(value, "tolist") else value


def _literal(value: Any, field: str, path: str) -> Any:
    value = plain(value)
    if isinstance(value, str):
        try:
            return parse_literal(value)
        except ValueError as exc:
            raise MCQTextError(field, str(exc), path) from None
    return value


def _one(entry: Any, path: str) -> MCQ:
    entry = plain(entry)
    if isinstance(entry, list | tuple):
        # CapRL's own pair: [question_with_options, gold_letter].
        if len(entry) != 2 or not isinstance(entry[0], str):
            raise MCQTextError("question", f"expected a [question_with_options, letter] pair, got {entry!r:.80}", path)
        return mcq_from_text(entry[0], plain(entry[1]))
    if not isinstance(entry, Mapping):
        got = type(entry).__name__
        raise MCQTextError("question", f"expected a {{question, choices, answer}} object, got {got}", path)
    question, answer, kind = entry.get("question"), plain(entry.get("answer")), entry.get("kind")
    if not isinstance(question, str):
        what = "missing" if question is None else f"must be a string, got {type(question).__name__}"
        raise MCQTextError("question", what, path)
    if answer is None:
        raise MCQTextError("answer", "missing", path)
    if isinstance(answer, bool) or not isinstance(answer, str | int):
        raise MCQTextError("answer", f"must be a letter, an index or the option's text, got {answer!r:.40}", path)
    raw = entry.get("choices") if entry.get("choices") is not None else entry.get("options")
    kind = None if kind is None else str(kind)
    if raw is None:
        return mcq_from_text(question, answer, kind)  # the options inside the question, as CapRL allows
    choices = _literal(raw, "options", path)
    if not isinstance(choices, list | tuple) or not all(isinstance(c, str) for c in choices):
        raise MCQTextError("options", "choices must be a list of strings", path)
    return mcq_from_choices(question, choices, answer, kind)


def mcqs_from_ground_truth(value: Any, *, allow_empty: bool = False) -> list[MCQ]:
    """MCQs from a verl/CapRL ground truth: a list (or numpy array, or JSON/literal string) of ``{question,
    choices, answer}`` objects (``options`` for ``choices``; no choices: the options are inside the question) or
    of ``[question_with_options, letter]`` pairs. ``MCQTextError`` names the question (``[i]``) and field."""
    value = _literal(value, "", "")
    if isinstance(value, Mapping):
        value = [value]
    if value is None or not isinstance(value, list | tuple) or (not value and not allow_empty):
        got = "nothing" if value is None else type(value).__name__ if not isinstance(value, list | tuple) else "[]"
        raise MCQTextError("", f"the ground truth must be a non-empty list of questions, got {got}")
    out = []
    for i, entry in enumerate(value):
        try:
            out.append(_one(entry, ""))
        except MCQTextError as exc:
            raise exc.under(f"[{i}]") from None
    return out
