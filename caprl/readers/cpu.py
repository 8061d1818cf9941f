"""The float type a reader computes in on CPU.

bfloat16 halves the bytes every forward streams, but only CPUs with bfloat16 matrix instructions (Intel AMX,
AVX512-BF16) compute it fast; elsewhere (AVX2 only) it is emulated and slower than float32. Measured on a 2-core
Xeon with AMX: a 512x1536x8960 matmul runs at 3.9x the float32 rate (benchmarks/RESULTS.md).
``CAPRL_CPU_DTYPE=float32|bfloat16`` overrides the choice.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

ENV = "CAPRL_CPU_DTYPE"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_fast_bf16() -> bool:
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def default_cpu_dtype() -> torch.dtype:
    choice = os.environ.get(ENV)
    if choice:
        value = getattr(torch, choice, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"{ENV}={choice!r} is not a torch dtype (use float32 or bfloat16)")
        return value
    return torch.bfloat16 if has_fast_bf16() else torch.float32
