"""Extra reward terms of CapRL++: a caption-length term and a video timestamp-format term.

>>> length_term(1500), length_term(2560), length_term(4000)
(1.0, 0.5, 0.0)
>>> round(timestamp_format_term("[00:00 - 00:02] a circle. [00:03] it turns red. [00:05] gone."), 3)
1.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# [mm:ss] or [mm:ss - mm:ss]; minutes may have more digits, and en dashes or "to" are tolerated.
_STAMP = re.compile(r"\[\s*(\d{1,3}):(\d{2})\s*(?:(?:-|–|—|to)\s*(\d{1,3}):(\d{2})\s*)?\]")


def length_term(n_tokens: int, *, full_until: int = 2048, zero_at: int = 3072) -> float:
    """1 up to ``full_until`` tokens, then linear down to 0 at ``zero_at`` (CapRL++ defaults 2048/3072)."""
    if zero_at <= full_until:
        raise ValueError(f"zero_at ({zero_at}) must exceed full_until ({full_until})")
    if n_tokens <= full_until:
        return 1.0
    return max(0.0, 1.0 - (n_tokens - full_until) / (zero_at - full_until))


@dataclass(frozen=True)
class TimestampStats:
    """The parts of the timestamp-format term, so a user can see why a caption scored what it did."""

    n_stamps: int
    validity: float
    coverage: float
    order: float
    score: float


def timestamp_stats(caption: str, *, target_stamps: int = 3) -> TimestampStats:
    """Score the ``[mm:ss]`` / ``[mm:ss - mm:ss]`` stamps of a video caption.

    validity: share of stamps with seconds <= 59 and end >= start; coverage: valid stamps / ``target_stamps``,
    capped at 1; order: 1 when the valid stamps' start times never go backwards, else 0.
    score = 0.45·coverage·validity + 0.25·validity + 0.30·order·validity (0 when there are no stamps).
    """
    stamps = []
    valid = []
    for m in _STAMP.finditer(caption):
        m1, s1, m2, s2 = m.groups()
        start = int(m1) * 60 + int(s1)
        ok = int(s1) <= 59
        if m2 is not None:
            end = int(m2) * 60 + int(s2)
            ok = ok and int(s2) <= 59 and end >= start
        stamps.append(start)
        if ok:
            valid.append(start)
    if not stamps:
        return TimestampStats(0, 0.0, 0.0, 0.0, 0.0)
    validity = len(valid) / len(stamps)
    coverage = min(1.0, len(valid) / target_stamps)
    order = 1.0 if all(a <= b for a, b in zip(valid, valid[1:], strict=False)) else 0.0
    score = 0.45 * coverage * validity + 0.25 * validity + 0.30 * order * validity
    return TimestampStats(len(stamps), validity, coverage, order, score)


def timestamp_format_term(caption: str, *, target_stamps: int = 3) -> float:
    return timestamp_stats(caption, target_stamps=target_stamps).score
