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
    shapes: Sequence[tuple[int, int, int]],
    *,
    dtype: torch.dtype = torch.float32,
    seconds: float = 1.0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Measured ``torch.matmul`` FLOP/s of ``(m, k) @ (k, n)`` for each distinct shape, and for the list together.

    Each distinct shape runs (after a warm-up) for about ``seconds``, best of three rounds. ``"combined"`` is the
    total FLOPs of one matmul per list entry (repeats count again) over their total best time: the rate a model
    whose work is exactly that list of matmuls could reach. ``"peak"`` is the best single shape. On a GPU
    (``device``) every timed span ends with a synchronize, so it measures the kernels, not their launches.
    """
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    best_time: dict[tuple[int, int, int], float] = {}
    for shape in dict.fromkeys(shapes):
        m, k, n = shape
        if dtype == torch.int8:  # int8 x int8 -> int32, the product caprl's int8 readers compute
            a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=dev)
            b = torch.randint(-127, 128, (k, n), dtype=torch.int8, device=dev)
            op = torch._int_mm
        else:
            a = torch.randn(m, k, dtype=dtype, device=dev)
            b = torch.randn(k, n, dtype=dtype, device=dev)
            op = torch.matmul
        op(a, b)
        sync()
        start = time.perf_counter()
        reps = 0
        while time.perf_counter() - start < 0.2:
            op(a, b)
            sync()
            reps += 1
        per_round = max(1, int(reps * seconds / 0.2 / 3))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(per_round):
                op(a, b)
            sync()
            best = min(best, (time.perf_counter() - start) / per_round)
        best_time[shape] = best
    rates = {f"{m}x{k}x{n}": 2.0 * m * k * n / t for (m, k, n), t in best_time.items()}
    total_flops = sum(2.0 * m * k * n for m, k, n in shapes)
    rates["combined"] = total_flops / sum(best_time[s] for s in shapes)
    rates["peak"] = max(v for key, v in rates.items() if key != "combined")
    return rates


def packed_flops(model, token_ids, rows) -> dict[str, float]:
    """Useful FLOPs of computing the reader's packed ``rows`` (``TransformersReader.plan``) for ``token_ids``:
    ``2 * P_layer * L * T`` (linear layers over the T tokens computed) + ``4 * heads * head_dim * L * K``
    (attention over the K visible (query, key) pairs: a token sees its node's ancestors and its own node up to
    itself) + ``2 * hidden * vocab`` per answer (the lm_head). Norms, rotary embeddings and activations are not
    counted."""
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    layer = model.model.layers[0]
    layer_params = sum(p.numel() for p in layer.parameters() if p.ndim == 2)
    layer_params += sum(b.numel() for name, b in layer.named_buffers() if name.endswith("weight_int8"))
    tokens = sum(len(r) for r in rows)
    pairs = 0
    for row in rows:
        vis = row.visibility()
        sizes = [row.seg.count(k) for k in range(len(row.parent))]
        before = [sum(n for a, n in enumerate(sizes) if vis[k, a] and a != k) for k in range(len(sizes))]
        offset: dict[int, int] = {}
        for s in row.seg:
            offset[s] = offset.get(s, 0) + 1
            pairs += before[s] + offset[s]
    n_layers = cfg.num_hidden_layers
    linear = 2.0 * layer_params * n_layers * tokens
    attention = 4.0 * cfg.num_attention_heads * head_dim * n_layers * pairs
    head = 2.0 * cfg.hidden_size * cfg.vocab_size * len(token_ids)
    total = linear + attention + head
    return {"tokens": tokens, "linear": linear, "attention": attention, "lm_head": head, "total": total}
