"""Question sampling and option shuffling with relabelling, seeded and with the gold answer tracked."""

from __future__ import annotations

import random
from dataclasses import dataclass

from caprl.schema import LETTERS, MCQ

DEFAULT_UNANSWERABLE = "The caption does not give enough information to answer."
CAPRL_UNANSWERABLE = "Can not answer based on the caption"
"""The option CapRL's curated questions and reward servers use (``caprl.reward.presets``)."""


@dataclass(frozen=True)
class ShuffledMCQ:
    """An MCQ as one reader call sees it: options in shuffled order, labelled A, B, ... in that order (the added
    "cannot be answered" option may carry a fixed letter instead: CapRL labels it F whatever the option count).

    ``order[i]`` is the index in the original MCQ of the option shown at position i (``None`` for the added
    "cannot be answered" option); ``gold`` is the position of the gold option after shuffling; ``labels[i]`` the
    letter shown for position i.
    """

    question: str
    options: tuple[str, ...]
    gold: int
    order: tuple[int | None, ...]
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            object.__setattr__(self, "labels", tuple(LETTERS[: len(self.options)]))
        if len(self.labels) != len(self.options):
            raise ValueError(f"{len(self.labels)} labels for {len(self.options)} options")

    @property
    def letters(self) -> str:
        return "".join(self.labels)

    @property
    def gold_letter(self) -> str:
        return self.labels[self.gold]

    def labelled_options(self, style: str = "{letter}) {text}") -> list[str]:
        return [style.format(letter=label, text=o) for label, o in zip(self.labels, self.options, strict=True)]


def check_unanswerable_letter(letter: str, n_options: int) -> None:
    """ValueError when a fixed "cannot be answered" letter would not come after ``n_options`` options A, B, ..."""
    if LETTERS.index(letter) < n_options:
        raise ValueError(
            f"{n_options} options use the letters A-{LETTERS[n_options - 1]}, so the 'cannot be answered' option "
            f"cannot be labelled {letter}"
        )


def shuffle_options(
    mcq: MCQ,
    rng: random.Random,
    *,
    shuffle: bool = True,
    unanswerable: str | None = None,
    unanswerable_letter: str | None = None,
) -> ShuffledMCQ:
    """Shuffle ``mcq``'s options (a permutation drawn from ``rng``); optionally append a "cannot be answered"
    option after them, as the reference does, labelled with the next letter or ``unanswerable_letter``. Never
    gold, so a reader that picks it scores 0."""
    order: list[int | None] = list(range(len(mcq.options)))
    if shuffle:
        rng.shuffle(order)
    options = [mcq.options[i] for i in order]  # type: ignore[index]
    labels = list(LETTERS[: len(options)])
    if unanswerable is not None:
        if len(options) >= len(LETTERS):
            raise ValueError(f"cannot add an unanswerable option to an MCQ with {len(options)} options")
        if unanswerable.lower() in (o.lower() for o in options):
            raise ValueError(f"the unanswerable option text {unanswerable!r} is already an option")
        if unanswerable_letter is not None:
            check_unanswerable_letter(unanswerable_letter, len(options))
        options.append(unanswerable)
        order.append(None)
        labels.append(unanswerable_letter or LETTERS[len(labels)])
    return ShuffledMCQ(
        question=mcq.question, options=tuple(options), gold=order.index(mcq.gold), order=tuple(order),
        labels=tuple(labels),
    )  # fmt: skip


def sample_questions(n_available: int, n: int | None, rng: random.Random) -> list[int]:
    """Indices of the questions to ask: ``n`` drawn with replacement (CapRL), or all of them when ``n`` is None."""
    if n_available == 0:
        raise ValueError("no MCQs to sample from")
    if n is None:
        return list(range(n_available))
    if n < 1:
        raise ValueError(f"n must be at least 1 (or None for all questions), got {n}")
    return [rng.randrange(n_available) for _ in range(n)]
