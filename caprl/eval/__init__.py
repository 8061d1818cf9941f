"""Prism evaluation: caption a benchmark's media, let a text-only reader answer its questions from the captions
alone, score with the benchmark's official metric. Cached, resumable stages; honest statistics.

Layout: ``benchmarks/`` (registry: loader + prompts + extraction + metric per benchmark), ``data`` (finding and
reading benchmark files), ``caption`` / ``read`` / ``score`` (the stages, append-only records), ``metrics/``,
``stats`` (clustered bootstrap), ``report``, ``pipeline`` (``run_prism``), ``cli`` (``caprl eval``).
"""

from caprl.eval.benchmarks import REGISTRY, get_benchmark
from caprl.eval.config import PrismConfig
from caprl.eval.data import DataMissing, DataPaths
from caprl.eval.metrics.judge import JudgeNotConfigured
from caprl.eval.pipeline import run_prism
from caprl.eval.read import StageError

__all__ = [
    "REGISTRY",
    "DataMissing",
    "DataPaths",
    "JudgeNotConfigured",
    "PrismConfig",
    "StageError",
    "get_benchmark",
    "run_prism",
]
