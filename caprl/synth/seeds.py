"""Per-item seeds: item ``i`` of a dataset depends only on ``(seed, i)``, so a small dataset prefixes a big one."""

from __future__ import annotations

import hashlib


def item_seed(seed: int, index: int, stream: str = "image") -> int:
    """A 48-bit scene seed for item ``index`` of the ``stream`` ("image"/"video") dataset made with ``seed``.

    Hashing (rather than ``seed * K + index``) keeps nearby datasets from sharing scenes; 48 bits stay exact in JSON.
    """
    digest = hashlib.sha256(f"caprl-shapes:{stream}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:6], "big")
