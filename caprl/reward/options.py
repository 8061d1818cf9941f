"""Question sampling and option shuffling with relabelling, seeded and with the gold answer tracked."""

from __future__ import annotations

import random
from dataclasses import dataclass

from caprl.schema import LETTERS, MCQ

DEFAULT_UNANSWERABLE = "The caption does not give enough information to answer."


@dataclass(frozen=True)
class ShuffledMCQ:
    """An MCQ as one reader call sees it: options in shuffled order, labelled A, B, ... in that order.

    ``order[i]`` is the index in the original MCQ of the option shown at position i (``None`` for the added
    "cannot be answered" option); ``gold`` is the position of the gold option after shuffling.
    """

    question: str
    options: tuple[str, ...]
    gold: int
    order: tuple[int | None, ...]

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def gold_letter(self) -> str:
        return LETTERS[self.gold]

    def labelled_options(self, style: str = "{letter}) {text}") -> list[str]:
        return [style.format(letter=LETTERS[i], text=o) for i, o in enumerate(self.options)]


def shuffle_options(
    mcq: MCQ, rng: random.Random, *, shuffle: bool = True, unanswerable: str | None = None
) -> ShuffledMCQ:
    """Shuffle ``mcq``'s options (a permutation drawn from ``rng``); optionally append a "cannot be answered"
    option as the last letter, as the reference does. Never gold, so a reader that picks it scores 0."""
    order: list[int | None] = list(range(len(mcq.options)))
    if shuffle:
        rng.shuffle(order)
    options = [mcq.options[i] for i in order]  # type: ignore[index]
    if unanswerable is not None:
        if len(options) >= len(LETTERS):
            raise ValueError(f"cannot add an unanswerable option to an MCQ with {len(options)} options")
        if unanswerable.lower() in (o.lower() for o in options):
            raise ValueError(f"the unanswerable option text {unanswerable!r} is already an option")
        options.append(unanswerable)
        order.append(None)
    return ShuffledMCQ(question=mcq.question, options=tuple(options), gold=order.index(mcq.gold), order=tuple(order))


def sample_questions(n_available: int, n: int | None, rng: random.Random) -> list[int]:
    """Indices of the questions to ask: ``n`` drawn with replacement (CapRL), or all of them when ``n`` is None."""
    if n_available == 0:
        raise ValueError("no MCQs to sample from")
    if n is None:
        return list(range(n_available))
    if n < 1:
        raise ValueError(f"n must be at least 1 (or None for all questions), got {n}")
    return [rng.randrange(n_available) for _ in range(n)]
