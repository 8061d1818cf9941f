"""The benchmark registry. Adding a benchmark is one module that builds a ``Benchmark``, plus a line here."""

from __future__ import annotations

from caprl.eval.benchmarks.base import Benchmark, BenchmarkError, LoadContext, Metric
from caprl.eval.benchmarks.chartqa import CHARTQA
from caprl.eval.benchmarks.chartqapro import CHARTQAPRO
from caprl.eval.benchmarks.infovqa import INFOVQA
from caprl.eval.benchmarks.mmbench_video import MMBENCH_VIDEO
from caprl.eval.benchmarks.mmstar import MMSTAR
from caprl.eval.benchmarks.mmvu import MMVU
from caprl.eval.benchmarks.mvbench import MVBENCH
from caprl.eval.benchmarks.seedbench import SEEDBENCH, SEEDBENCH_2K
from caprl.eval.benchmarks.shapes import SHAPES_IMAGE, SHAPES_VIDEO
from caprl.eval.benchmarks.timelens import TIMELENS
from caprl.eval.benchmarks.tomato import TOMATO
from caprl.eval.benchmarks.videomme import VIDEO_MME

REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in (
        CHARTQA,
        CHARTQAPRO,
        INFOVQA,
        MMSTAR,
        SEEDBENCH,
        SEEDBENCH_2K,
        VIDEO_MME,
        MVBENCH,
        MMVU,
        MMBENCH_VIDEO,
        TOMATO,
        TIMELENS,
        SHAPES_IMAGE,
        SHAPES_VIDEO,
    )
}


def get_benchmark(name: str) -> Benchmark:
    key = name.strip().lower()
    if key not in REGISTRY:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


__all__ = ["REGISTRY", "Benchmark", "BenchmarkError", "LoadContext", "Metric", "get_benchmark"]
