"""How long the demo will take on this CPU, from a measured probe rather than a table.

The demo's time is mostly the reader's (GRPO rewards and the held-out reads: 80-90% of it on both CPU classes), so
a short fixed reading — every question of the first held-out images, read from their detailed reference captions
through the reward service, as the evaluation reads — times the reader here. The expected wall time is a line
through two measured default demos, one per CPU class (``DEMO_RUNS``: probe seconds, whole-demo seconds): the
reader's part scales with the probe, the rest (the captioner's warm-up and updates) is about the same on both.
docs/train.md, "How long it takes", has the runs.
"""

from __future__ import annotations

import time

from caprl.data.io import Dataset
from caprl.demo.evaluate import ScoreFn, read

PROBE_IMAGES = 3
DEMO_RUNS = {"bfloat16, Xeon with AMX": (4.37, 508.0), "int8, AVX2 (emulated on that Xeon)": (17.11, 1570.1)}
"""Per CPU class: (speed probe seconds, default demo wall seconds), measured alone (AMX: seed 1, 24 held-out
images, before the reshuffled check shared the main reading's call; AVX2: seed 0, 16 held-out images, the class's
default, with it)."""


def probe_reader(ds: Dataset, score: ScoreFn, *, seed: int = 0) -> tuple[float, int]:
    """Seconds to read every question of the first ``PROBE_IMAGES`` held-out images from their detailed reference
    captions, and how many questions that was."""
    part = Dataset(ds.samples[:PROBE_IMAGES], ds.root)
    captions = [[s.references["detailed"]] for s in part.samples]
    start = time.perf_counter()
    reading = read(part, captions, score, seed=seed)
    return time.perf_counter() - start, len(reading.correct)


def estimate_seconds(probe_s: float) -> float:
    """The default demo's expected wall time on this CPU, from the probe: the line through ``DEMO_RUNS``."""
    (p0, w0), (p1, w1) = sorted(DEMO_RUNS.values())
    per_probe_second = (w1 - w0) / (p1 - p0)
    return max(w0 + per_probe_second * (probe_s - p0), 0.0)
