"""What a reader computes in on CPU: bfloat16, int8 or float32, chosen by the CPU's features.

- **bfloat16** on CPUs with bfloat16 matrix instructions (Intel AMX, AVX512-BF16): a 512x1536x8960 matmul runs at
  3.9x the float32 rate on a 2-core Xeon with AMX (benchmarks/RESULTS.md).
- **int8** elsewhere (AVX2 only, where bfloat16 is emulated and slower than float32): the decoder's linear layers
  as W8A8 int8 matmuls (``caprl.readers.int8``), float32 everything else; accepted against float32 by the reader
  check at every caption level (docs/readers.md, "Which CPU gets what").
- **float32** on request, and wherever int8 matmuls are not available.

``CAPRL_CPU_DTYPE=float32|bfloat16|int8`` overrides the choice (the test suite pins float32 for exact
comparisons). ``CAPRL_EMULATE_CPU=avx2`` makes a CPU with bfloat16 units choose as an AVX2-only one would, for
timing the slower class on a faster machine (with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2``, which keep torch's kernels to AVX2; docs/readers.md).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

ENV = "CAPRL_CPU_DTYPE"
EMULATE_ENV = "CAPRL_EMULATE_CPU"
PRECISIONS = ("bfloat16", "float32", "int8")


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
    emulate = os.environ.get(EMULATE_ENV)
    if emulate:
        if emulate != "avx2":
            raise ValueError(f"{EMULATE_ENV}={emulate!r}: the one CPU class caprl emulates is 'avx2'")
        return False
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


@functools.lru_cache(maxsize=1)
def has_int8_matmul() -> bool:
    """Whether this torch build runs ``torch._int_mm`` on the CPU."""
    try:
        a = torch.ones((32, 32), dtype=torch.int8)
        return bool(torch._int_mm(a, a)[0, 0].item() == 32)
    except (RuntimeError, AttributeError):
        return False


def cpu_precision() -> str:
    """``bfloat16``, ``int8`` or ``float32``: ``$CAPRL_CPU_DTYPE`` if set, else by the CPU's features."""
    choice = os.environ.get(ENV)
    if choice:
        if choice not in PRECISIONS:
            raise ValueError(f"{ENV}={choice!r} is not one of {', '.join(PRECISIONS)}")
        return choice
    return native_precision()


def native_precision() -> str:
    """What this CPU's features choose, whatever ``$CAPRL_CPU_DTYPE`` says."""
    if has_fast_bf16():
        return "bfloat16"
    return "int8" if has_int8_matmul() else "float32"


def default_cpu_dtype() -> torch.dtype:
    """The dtype a reader's weights are loaded in on this CPU (int8 readers load float32, then convert)."""
    return torch.bfloat16 if cpu_precision() == "bfloat16" else torch.float32
