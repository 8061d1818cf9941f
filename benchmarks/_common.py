"""Helpers shared by the benchmark scripts: machine description, timing, measured matmul throughput."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def cpu_model_name() -> str:
    """The CPU's model name as ``lscpu`` / ``/proc/cpuinfo`` reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def matmul_flops(
    shapes: Sequence[tuple[int, int, int]], *, dtype: torch.dtype = torch.float32, seconds: float = 1.0
) -> dict[str, float]:
    """Measured ``torch.matmul`` FLOP/s of ``(m, k) @ (k, n)`` for each distinct shape, and for the list together.

    Each distinct shape runs (after a warm-up) for about ``seconds``, best of three rounds. ``"combined"`` is the
    total FLOPs of one matmul per list entry (repeats count again) over their total best time: the rate a model
    whose work is exactly that list of matmuls could reach. ``"peak"`` is the best single shape.
    """
    best_time: dict[tuple[int, int, int], float] = {}
    for shape in dict.fromkeys(shapes):
        m, k, n = shape
        a = torch.randn(m, k, dtype=dtype)
        b = torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)
        start = time.perf_counter()
        reps = 0
        while time.perf_counter() - start < 0.2:
            torch.matmul(a, b)
            reps += 1
        per_round = max(1, int(reps * seconds / 0.2 / 3))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(per_round):
                torch.matmul(a, b)
            best = min(best, (time.perf_counter() - start) / per_round)
        best_time[shape] = best
    rates = {f"{m}x{k}x{n}": 2.0 * m * k * n / t for (m, k, n), t in best_time.items()}
    total_flops = sum(2.0 * m * k * n for m, k, n in shapes)
    rates["combined"] = total_flops / sum(best_time[s] for s in shapes)
    rates["peak"] = max(v for key, v in rates.items() if key != "combined")
    return rates
