"""Option letters' log-probabilities from what a server or engine returns, shared by the ``openai`` and ``vllm``
readers: the token ids of each letter's spellings, exact per-id log-probabilities, and top-k lists (where a letter
may be missing and gets a floor).

>>> letters_from_topk("AB", [("A", -0.1), ("C", -2.5)])  # doctest: +ELLIPSIS
([-0.1, -4.33...], 1)

B is not listed: it gets at most its share of the mass left over (1.3%), and no more than the smallest listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from caprl.readers.base import LetterQuery, ReaderError

TOKEN_ID_PREFIX = "token_id:"  # vLLM's spelling of a token when ``return_tokens_as_token_ids`` is set
MAX_LOGPROB_TOKEN_IDS = 128  # vLLM's limit on ``logprob_token_ids``
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def letter_variant_ids(
    encode: Callable[[str], list[int]], letters: str, *, spaced: bool = False
) -> dict[str, list[int]]:
    """For each letter, the id of ``"A"`` (which must be a single token) and, with ``spaced``, of ``" A"`` too."""
    out: dict[str, list[int]] = {}
    for letter in letters:
        enc = encode(letter)
        if len(enc) != 1:
            raise ReaderError(
                f"option letter {letter!r} encodes to {len(enc)} tokens, so its probability cannot be read from "
                "one position; use a reader whose letters A-Z are single tokens"
            )
        ids = [enc[0]]
        if spaced:
            enc = encode(" " + letter)
            if len(enc) == 1 and enc[0] not in ids:
                ids.append(enc[0])
        out[letter] = ids
    return out


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def letters_from_id_logprobs(letters: str, variants: dict[str, list[int]], by_id: dict[int, float]) -> list[float]:
    """Each letter's log-probability from exact per-id log-probabilities (every variant id must be present)."""
    return [logsumexp([by_id[i] for i in variants[letter]]) for letter in letters]


def letters_from_topk(
    letters: str,
    top: Sequence[tuple[str | int, float]],
    variants: dict[str, list[int]] | None = None,
    *,
    spaced: bool = False,
) -> tuple[list[float], int]:
    """Each letter's log-probability from a top-k list of ``(token text or id, logprob)``; missing ones floored.

    Entries given as ids match ``variants``; entries given as text match a letter when the text is the letter
    (or, with ``spaced``, the letter after whitespace). Returns the log-probabilities and how many were floored.
    """
    found: dict[str, list[float]] = {letter: [] for letter in letters}
    id_to_letter = {i: letter for letter, ids in (variants or {}).items() for i in ids if letter in found}
    seen: set[str | int] = set()
    for token, lp in top:
        if token in seen:  # the sampled token can be listed twice
            continue
        seen.add(token)
        if isinstance(token, int):
            letter = id_to_letter.get(token)
        else:
            text = token.lstrip() if spaced else token
            letter = text if text in found else None
        if letter is not None:
            found[letter].append(float(lp))
    listed = [float(lp) for _, lp in top]
    missing = [letter for letter in letters if not found[letter]]
    out: list[float] = []
    if missing:
        left_over = max(0.0, 1.0 - sum(math.exp(lp) for lp in listed))
        share = math.log(left_over / len(missing)) if left_over > 0 else -math.inf
        smallest = min(listed) if listed else -math.inf
        floor = min(smallest, share)
        if floor == -math.inf:
            floor = -1e4  # all the mass is listed and no letter is in it: a very small, finite value
    for letter in letters:
        out.append(logsumexp(found[letter]) if found[letter] else floor)
    return out, len(missing)


def parse_token_key(key: str) -> str | int:
    if key.startswith(TOKEN_ID_PREFIX):
        try:
            return int(key[len(TOKEN_ID_PREFIX) :])
        except ValueError:
            return key
    return key


def check_queries(queries: Sequence[LetterQuery]) -> None:
    for q in queries:
        if not q.letters or len(set(q.letters)) != len(q.letters) or not set(q.letters) <= set(ALPHABET):
            raise ValueError(f"letters must be distinct capitals A-Z, got {q.letters!r}")


def completion_top_logprobs(choice: dict[str, Any]) -> list[tuple[str | int, float]] | None:
    """The first generated position's alternatives, as ``(token text or id, logprob)``; None when absent."""
    logprobs = choice.get("logprobs")
    if not logprobs:
        return None
    top = logprobs.get("top_logprobs")
    if not top or top[0] is None:
        return None
    return [(parse_token_key(str(k)), float(v)) for k, v in top[0].items()]
