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
    "cannot be answered" option may carry a fixed letter instead, CapRL's F, when no option has it).

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

    @property
    def unanswerable_letter(self) -> str | None:
        """The letter of the added "cannot be answered" option (None when none was added)."""
        return next((label for label, i in zip(self.labels, self.order, strict=True) if i is None), None)

    def labelled_options(self, style: str = "{letter}) {text}") -> list[str]:
        return [style.format(letter=label, text=o) for label, o in zip(self.labels, self.options, strict=True)]


def unanswerable_label(letter: str | None, n_options: int) -> str:
    """The letter of the "cannot be answered" option added after ``n_options`` options labelled A, B, ...:
    ``letter`` (a fixed one, CapRL's F) when no option has it, else the letter after the last option.

    So a fixed letter that an option has is not an error, for a preset's F or a user's letter alike: F after four
    options gives A-D then F (CapRL's layout), after six options A-F then G, and C after four options A-D then E.
    What must never happen is two options under one letter (CapRL++'s server shows two F's for six options, and a
    reader's F is then ambiguous); the letter moving for some questions is harmless. ValueError only when no
    letter is left (26 options)."""
    if n_options >= len(LETTERS):
        raise ValueError(
            f"{n_options} options use the letters A-{LETTERS[-1]}, so no letter is left for the 'cannot be answered' "
            "option"
        )
    if letter is not None and LETTERS.index(letter) >= n_options:
        return letter
    return LETTERS[n_options]


def check_unanswerable_letter(letter: str, n_options: int) -> None:
    """ValueError when a question of ``n_options`` options leaves no letter for the "cannot be answered" option
    (see :func:`unanswerable_label`; a fixed ``letter`` that an option already has is not an error)."""
    unanswerable_label(letter, n_options)


def shuffle_options(
    mcq: MCQ,
    rng: random.Random,
    *,
    shuffle: bool = True,
    unanswerable: str | None = None,
    unanswerable_letter: str | None = None,
) -> ShuffledMCQ:
    """Shuffle ``mcq``'s options (a permutation drawn from ``rng``); optionally append a "cannot be answered"
    option after them, as the reference does, labelled with the next letter or ``unanswerable_letter`` (when no
    option has it: :func:`unanswerable_label`). Never gold, so a reader that picks it scores 0."""
    order: list[int | None] = list(range(len(mcq.options)))
    if shuffle:
        rng.shuffle(order)
    options = [mcq.options[i] for i in order]  # type: ignore[index]
    labels = list(LETTERS[: len(options)])
    if unanswerable is not None:
        label = unanswerable_label(unanswerable_letter, len(options))
        if unanswerable.lower() in (o.lower() for o in options):
            raise ValueError(f"the unanswerable option text {unanswerable!r} is already an option")
        options.append(unanswerable)
        order.append(None)
        labels.append(label)
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
