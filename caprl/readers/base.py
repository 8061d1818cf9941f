"""The one reader protocol: a text-only model answering multiple-choice questions.

Two calls. ``score_letters`` is the fast path: for each prompt, the probability of each option letter as the
first token of the answer, from one forward pass (no decoding). ``generate`` is for readers that must think
first, or APIs without log-probabilities; its text goes through ``caprl.reward.extract.extract_choice``. When it
samples, ``seeds`` (one per prompt) make each prompt's text a function of that prompt and its seed alone, not of the
other prompts of the call (their number, lengths or order): the reward engine passes each asked question's seed,
so a caption's reward does not depend on its batch.

Prompts are chat messages (``[{"role": "user", "content": "..."}]``); each backend renders them with its model's
own chat template (``template_flags``): a prompt that ends with an assistant message is an answer lead-in the
model continues (``"The answer is"``), any other prompt opens a new assistant turn. Callers should put prompts that
share a prefix (the questions about one caption) next to each other: backends that can reuse a prefix do so for
consecutive prompts.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

Messages = list[dict[str, Any]]


def template_flags(messages: Messages) -> dict[str, bool]:
    """How a chat template renders ``messages``: a final assistant message is a lead-in the model continues
    (``continue_final_message``); otherwise the generation prompt opens the assistant's turn."""
    if messages and messages[-1].get("role") == "assistant":
        return {"add_generation_prompt": False, "continue_final_message": True}
    return {"add_generation_prompt": True}


class ReaderError(RuntimeError):
    """A reader that cannot do what was asked (letters that are not single tokens, a server that fails, ...)."""


@dataclass(frozen=True)
class LetterQuery:
    """One prompt and the option letters whose probabilities are wanted (e.g. ``"ABCD"``)."""

    messages: Messages
    letters: str


@dataclass(frozen=True)
class LetterScores:
    """The reader's answer distribution for one prompt.

    ``probs[i]`` is the probability of ``letters[i]``, renormalised over the letters; ``letter_mass`` is how
    much probability the reader put on the letters at all before renormalising (low mass means the reader
    wanted to say something else, and its letter probabilities mean little).
    """

    letters: str
    probs: np.ndarray
    letter_mass: float

    @property
    def argmax(self) -> str:
        return self.letters[int(np.argmax(self.probs))]

    def prob(self, letter: str) -> float:
        return float(self.probs[self.letters.index(letter)])


@runtime_checkable
class Reader(Protocol):
    """What every reader backend provides. ``generate``: ``seed`` seeds a sampled call as a whole; ``seeds``, one
    per prompt, take its place and make each prompt's sample independent of the rest of the call."""

    name: str

    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]: ...

    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[str]: ...


def takes_seeds(reader: Any) -> bool:
    """Whether ``reader.generate`` takes per-prompt ``seeds`` (readers written before the argument do not)."""
    try:
        params = inspect.signature(reader.generate).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "seeds" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_seeds(seeds: Sequence[int] | None, n_prompts: int) -> list[int] | None:
    """``seeds`` as a list, or ValueError when their number is not one per prompt."""
    if seeds is None:
        return None
    seeds = list(seeds)
    if len(seeds) != n_prompts:
        raise ValueError(f"{len(seeds)} seeds for {n_prompts} prompts: give one seed per prompt")
    return seeds


def letter_scores_from_logprobs(letters: str, logprobs: Sequence[float]) -> LetterScores:
    """Build ``LetterScores`` from the letters' log-probabilities under the full vocabulary."""
    lp = np.asarray(logprobs, dtype=np.float64)
    mass = float(np.exp(lp).sum())
    shifted = np.exp(lp - lp.max())
    return LetterScores(letters=letters, probs=shifted / shifted.sum(), letter_mass=min(1.0, mass))
