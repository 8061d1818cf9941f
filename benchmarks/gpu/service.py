"""Section 2, the reward service: ``caprl reward serve`` (a child process, the reader on this device) under
``sizes.clients`` concurrent clients on its bulk endpoint, against the same engine in this process.

Clients: each its own ``AsyncRewardClient`` (one connection), sending ``sizes.captions_per_request`` captions per
request (one GRPO group) to ``/v1/rewards``, one request after another, ``sizes.requests_per_client`` times. The
service coalesces them into engine batches of up to ``sizes.max_batch`` captions. Latency: each request from send to
answer. In process: ``RewardEngine.score`` on the same captions in batches of ``sizes.max_batch``, on a reader
loaded from the same folder the same way (``TransformersReader(folder, device=...)``). Reward options: caprl's
defaults (letter scoring, every question once), seed 0 on both sides.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from benchmarks.gpu.context import Bench, free_memory
from benchmarks.gpu.schema import ServiceFigures, ServiceSection
from benchmarks.gpu.workload import make_items


def run(b: Bench, out: ServiceSection) -> None:
    from caprl.readers.transformers import TransformersReader
    from caprl.reward.engine import RewardConfig, RewardEngine

    s = b.sizes
    n = s.clients * s.requests_per_client * s.captions_per_request
    items = make_items(n, b.tokenizer(), tokens=s.caption_tokens, questions=s.questions, seed=2)
    out.reader, out.clients, out.captions_per_request = s.service_reader, s.clients, s.captions_per_request
    out.captions, out.max_batch = n, s.max_batch

    print("[service] starting caprl reward serve", flush=True)
    svc = b.service()
    # Half of what is left for the clients (then they send no new requests); the rest for the in-process run.
    latencies, wall = asyncio.run(drive(svc.url, items, s.clients, s.captions_per_request, 0.5 * b.left()))
    rate = len(latencies) * s.captions_per_request / wall
    out.service = ServiceFigures(
        captions=len(latencies) * s.captions_per_request,
        captions_per_s=rate,
        questions_per_s=rate * s.questions,
        p50_ms=float(np.percentile(latencies, 50)) * 1000,
        p99_ms=float(np.percentile(latencies, 99)) * 1000,
    )
    print(f"[service] HTTP: {rate:.1f} captions/s, p50 {out.service.p50_ms:.0f} ms, p99 {out.service.p99_ms:.0f} ms",
          flush=True)  # fmt: skip

    reader = TransformersReader(b.reader_dir(), device=b.device)
    engine = RewardEngine(reader, RewardConfig(seed=0))
    try:
        engine.score(items[: s.max_batch])  # warm-up, as the service had its first requests
        b.sync()
        start, done = time.perf_counter(), 0
        for k in range(0, n, s.max_batch):
            done += len(engine.score(items[k : k + s.max_batch]))
            seconds = time.perf_counter() - start
            if b.left() < 1.5 * seconds / done * s.max_batch:
                break  # out of time: the rate of the batches done
    finally:
        del engine, reader
        free_memory()
    out.in_process = ServiceFigures(
        captions=done, captions_per_s=done / seconds, questions_per_s=done * s.questions / seconds
    )
    out.service_vs_in_process = out.service.captions_per_s / out.in_process.captions_per_s
    print(f"[service] in process: {done / seconds:.1f} captions/s ({done} captions)", flush=True)


async def drive(url: str, items: list, clients: int, per_request: int, time_left: float) -> tuple[list[float], float]:
    """Latencies of every request and the wall time of all of them: ``clients`` clients share ``items`` in
    requests of ``per_request`` captions."""
    from caprl.server.client import AsyncRewardClient

    requests = [items[k : k + per_request] for k in range(0, len(items), per_request)]
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    latencies: list[float] = []

    async def client_loop(client: AsyncRewardClient) -> None:
        while not queue.empty() and time.perf_counter() < stop_at:
            batch = queue.get_nowait()
            sent = time.perf_counter()
            results = await client.score(batch)
            latencies.append(time.perf_counter() - sent)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} rewards for {len(batch)} captions")

    pool = [AsyncRewardClient(url, max_concurrency=1, timeout=max(60.0, time_left)) for _ in range(clients)]
    try:
        await pool[0].score(requests[0])  # the service's first engine call (kernels, prefix cache) is not timed
        await asyncio.gather(*(c.health() for c in pool))  # connections opened outside the timing
        start = time.perf_counter()
        stop_at = start + time_left  # no new request after this; the ones in flight are answered and counted
        await asyncio.gather(*(client_loop(c) for c in pool))
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return latencies, wall
