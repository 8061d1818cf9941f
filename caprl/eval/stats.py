"""Bootstrap intervals clustered by medium: questions about one image or video are not independent (they share
captions), so the bootstrap resamples media with replacement and keeps each medium's questions together.

The statistic is the mean over questions (a ratio of cluster sums to cluster sizes); the interval is the 2.5th
and 97.5th percentile over resamples. Resampling weights are drawn in blocks, so memory stays bounded for tens
of thousands of media.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_BLOCK_CELLS = 4_000_000


def cluster_sums(values: Sequence[float], clusters: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the sum of its values and its number of values."""
    _, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(values, dtype=np.float64))
    counts = np.bincount(inverse).astype(np.float64)
    return sums, counts


def cluster_bootstrap(
    values: Sequence[float], clusters: Sequence[str], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile interval of the mean of ``values`` under a cluster bootstrap; None for fewer than two values."""
    if len(values) != len(clusters):
        raise ValueError("values and clusters differ in length")
    if len(values) < 2:
        return None
    sums, counts = cluster_sums(values, clusters)
    c = len(sums)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    block = max(1, _BLOCK_CELLS // c)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        # Multinomial counts = how often each cluster is drawn in one resample of c clusters.
        weights = rng.multinomial(c, np.full(c, 1.0 / c), size=b)
        stats[start : start + b] = (weights @ sums) / (weights @ counts)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)
