"""Load test of the reward service on loopback: many concurrent clients, one caption per request, and a restart of
the server in the middle of the run.

``--clients`` clients (default 32), each with its own connection, each sending ``--requests`` (default 200)
single-caption requests one after another to ``caprl reward serve`` in a child process. When ``--restart-at`` of
the requests (default half) are answered, the server is stopped with SIGTERM (it answers what is in flight, then
exits) and started again on the same port; the clients retry (connection refused, 503 while loading) until it is
back. Every answer is checked against the in-process engine's reward for the same caption and seed.

Printed: answered, lost (never answered), wrong (answered with a reward other than the in-process one), latency
p50/p99 (each request from first send to answer, retries included; also for the requests that did not overlap
the restart), items/s over the whole run and outside the restart, the restart's downtime, and the clients'
retries. Bounded: ``--clients x --requests`` requests, and ``--time-limit`` seconds (default 900), after which the
run stops and counts what is missing as lost. Loopback only.

Work per request is kept small so the run fits the bound on a 2-core machine: the tiny reader, short (``terse``)
captions, and one question per caption drawn from the item's MCQs (``--n 1``; CapRL's ablation finds one
question per image already gives most of the gain).

Usage: .venv/bin/python benchmarks/load_test.py [--clients 32] [--requests 200] [--no-restart]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import machine  # noqa: E402
from benchmarks.service_throughput import make_items, reader_dir  # noqa: E402
from caprl.reward.engine import RewardConfig, RewardEngine  # noqa: E402
from caprl.server.client import AsyncRewardClient, RewardServiceError  # noqa: E402
from caprl.server.process import ServiceProcess  # noqa: E402


@dataclass
class Run:
    total: int
    answered: int = 0
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered) per answered request
    restart: tuple[float, float] | None = None  # (SIGTERM sent, ready again)
    halfway: asyncio.Event = field(default_factory=asyncio.Event)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


async def client_loop(k: int, url: str, n: int, pool, expected: list[float], run: Run, restart_after: int) -> int:
    # Retries cover a restart: connection refused, then 503 while the new server loads (~10 s on a busy machine).
    async with AsyncRewardClient(url, max_retries=120, backoff_base=0.05, backoff_max=0.5, max_retry_after=0.5,
                                 timeout=120, max_concurrency=1) as client:  # fmt: skip
        for j in range(n):
            index = (k * n + j) % len(pool)
            sent = time.perf_counter()
            try:
                [result] = await client.score([pool[index]])
            except RewardServiceError as exc:
                run.errors.append(f"client {k} request {j}: {exc}")
                continue
            run.spans.append((sent, time.perf_counter()))
            run.answered += 1
            if abs(result.reward - expected[index]) > 1e-6 or result.id != pool[index].id:
                run.wrong.append(f"client {k} request {j}: {result.reward} != {expected[index]} (item {index})")
            if run.answered == restart_after:
                run.halfway.set()
        return client.retries


async def restarter(svc: ServiceProcess, run: Run) -> None:
    await run.halfway.wait()
    started = time.perf_counter()
    print(f"restarting the server after {run.answered} answers ...", flush=True)
    await asyncio.to_thread(svc.restart)
    run.restart = (started, time.perf_counter())
    print(f"server back after {run.restart[1] - started:.1f} s", flush=True)


def mean_batch(url: str) -> float | None:
    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    total = re.search(r"^caprl_batch_items_sum (\S+)", text, re.M)
    count = re.search(r"^caprl_batch_items_count (\S+)", text, re.M)
    if not total or not count or float(count.group(1)) == 0:
        return None
    return round(float(total.group(1)) / float(count.group(1)), 2)


async def drive(args: argparse.Namespace, svc: ServiceProcess, pool, expected: list[float]) -> tuple[Run, float, int]:
    total = args.clients * args.requests
    run = Run(total)
    restart_after = int(total * args.restart_at) if not args.no_restart else -1
    tasks = [
        asyncio.create_task(client_loop(k, svc.url, args.requests, pool, expected, run, restart_after))
        for k in range(args.clients)
    ]
    helper = asyncio.create_task(restarter(svc, run)) if not args.no_restart else None
    start = time.perf_counter()
    done, pending = await asyncio.wait(tasks, timeout=args.time_limit)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - start
    if helper is not None:
        if not helper.done():
            helper.cancel()
        await asyncio.gather(helper, return_exceptions=True)
    retries = sum(t.result() for t in done if not t.cancelled() and t.exception() is None)
    if pending:
        run.errors.append(f"time limit of {args.time_limit:g} s reached with {len(pending)} clients unfinished")
    return run, wall, retries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", help="Reader model directory (default: build the tiny reader).")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200, help="Requests per client.")
    ap.add_argument("--pool", type=int, default=256, help="Distinct captions the requests cycle through.")
    ap.add_argument("--level", default="terse")
    ap.add_argument("--n", type=int, default=1, help="Questions per caption (drawn from its MCQs).")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--restart-at", type=float, default=0.5, help="Share of answers after which to restart.")
    ap.add_argument("--no-restart", action="store_true")
    ap.add_argument("--time-limit", type=float, default=900.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    env = {"OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="caprl-load-") as tmp:
        workdir = Path(tmp)
        reader = reader_dir(args.reader, workdir)
        from caprl.readers.transformers import TransformersReader

        pool = make_items(args.pool, args.level)
        engine = RewardEngine(TransformersReader(reader), RewardConfig(n_questions=args.n, seed=0))
        expected = [r.reward for s in range(0, len(pool), 64) for r in engine.score(pool[s : s + 64])]
        del engine
        serve_args = ["--n", str(args.n), "--seed", "0", "--max-batch", str(args.max_batch), "--max-wait-ms", "5"]
        svc = ServiceProcess(reader, serve_args, env=env, log_path=workdir / "serve.log")
        print(f"{args.clients} clients x {args.requests} requests ({args.pool} distinct captions, {args.n} question "
              f"each); starting the service ...", flush=True)  # fmt: skip
        with svc:
            run, wall, retries = asyncio.run(drive(args, svc, pool, expected))
            batch = mean_batch(svc.url)

    latencies = [b - a for a, b in run.spans]
    if run.restart:
        r0, r1 = run.restart
        calm = [b - a for a, b in run.spans if b < r0 or a > r1]
        calm_items_per_s = len(calm) / (wall - (r1 - r0))
    else:
        calm, calm_items_per_s = latencies, run.answered / wall
    summary = {
        "benchmark": "load_test",
        "machine": machine(),
        "clients": args.clients,
        "requests": run.total,
        "answered": run.answered,
        "lost": run.total - run.answered,
        "wrong": len(run.wrong),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": percentile(latencies, 100),
        },
        "latency_ms_outside_restart": {"p50": percentile(calm, 50), "p99": percentile(calm, 99)},
        "items_per_s": round(run.answered / wall, 2),
        "items_per_s_outside_restart": round(calm_items_per_s, 2),
        "wall_s": round(wall, 1),
        "restart_downtime_s": round(run.restart[1] - run.restart[0], 2) if run.restart else None,
        "client_retries": retries,
        "mean_batch_items_after_restart": batch,
        "ok": run.answered == run.total and not run.wrong and not run.errors,
    }
    for line in (run.wrong + run.errors)[:10]:
        print(line)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
