"""Reward service throughput: the same items scored in process, through HTTP in bulk, and as single-item requests
from 32 concurrent clients, measured side by side in one run.

(a) in process: ``RewardEngine.score`` on batches of ``--batch`` items, in this process.
(b) HTTP bulk: ``AsyncRewardClient.score`` on all items (requests of ``--batch`` items, two in flight, so the next
    batch is queued while one is scored) against ``caprl reward serve --max-batch BATCH`` in a child process.
(c) HTTP single: ``--clients`` concurrent clients, each with its own connection, each sending one item per request,
    sequentially, until every item is scored; the service coalesces them into engine batches.

Every HTTP reward is checked against (a). Figures: items/s of each (best of ``--repeats`` rounds, the modes
interleaved within each round, so load from other jobs on a shared machine hits all three alike), the ratios of
the best rates ``bulk_vs_in_process`` (target >= 0.9) and ``single_vs_bulk`` (target >= 0.5), and the same ratios
within each round.

Reader: the project's tiny Qwen2 reader (built locally, seed 0) unless ``--reader`` names another. A small reader
is the hard case for the ratios: the less the engine costs per item, the larger the share of HTTP's own cost.
Captions: shapes-world ``--level`` captions (exhaustive: ~100-250 tokens) with all their MCQs (6-8 each).

Usage: .venv/bin/python benchmarks/service_throughput.py [--items 64] [--batch 32] [--clients 32] [--repeats 3]
Torch runs one intra-op thread in both processes (``--threads``; see benchmarks/RESULTS.md on shared machines).
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmarks._common import machine  # noqa: E402
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem, RewardResult  # noqa: E402
from caprl.server.client import AsyncRewardClient  # noqa: E402
from caprl.server.process import ServiceProcess  # noqa: E402
from caprl.synth import make_image_sample  # noqa: E402


def make_items(n: int, level: str, seed: int = 5) -> list[RewardItem]:
    out = []
    for i in range(n):
        sample, _ = make_image_sample(i, seed=seed)
        out.append(RewardItem(caption=sample.references[level], mcqs=sample.mcqs, id=sample.id))
    return out


def reader_dir(arg: str | None, workdir: Path) -> str:
    if arg:
        return arg
    from caprl.models import build_tiny_models

    return str(build_tiny_models(workdir / "tiny", seed=0).reader)


def in_process(engine: RewardEngine, items: list[RewardItem], batch: int) -> tuple[float, list[RewardResult]]:
    start = time.perf_counter()
    results = [r for s in range(0, len(items), batch) for r in engine.score(items[s : s + batch])]
    return time.perf_counter() - start, results


async def http_bulk(url: str, items: list[RewardItem], batch: int) -> tuple[float, list[RewardResult]]:
    async with AsyncRewardClient(url, chunk_size=batch, max_concurrency=2) as client:
        await client.score(items[:1])  # connect (and warm) outside the timing
        start = time.perf_counter()
        results = await client.score(items)
        return time.perf_counter() - start, results


async def http_single(url: str, items: list[RewardItem], clients: int) -> tuple[float, list[RewardResult]]:
    pool = [AsyncRewardClient(url, max_concurrency=1) for _ in range(clients)]
    results: list[RewardResult | None] = [None] * len(items)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    async def worker(client: AsyncRewardClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            [results[i]] = await client.score([items[i]])

    try:
        await asyncio.gather(*(c.health() for c in pool))  # open the connections outside the timing
        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in pool))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return elapsed, results  # type: ignore[return-value]


def mismatches(got: list[RewardResult], want: list[RewardResult]) -> int:
    return sum(abs(g.reward - w.reward) > 1e-6 or g.id != w.id for g, w in zip(got, want, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", help="Reader model directory (default: build the tiny reader).")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32, help="Items per engine call, in process and in the service.")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--level", default="exhaustive", help="Caption level of the shapes world.")
    ap.add_argument("--mode", default="hard")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    env = {"OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="caprl-svc-bench-") as tmp:
        workdir = Path(tmp)
        reader = reader_dir(args.reader, workdir)
        from caprl.readers.transformers import TransformersReader

        config = RewardConfig(mode=args.mode, seed=0)
        engine = RewardEngine(TransformersReader(reader), config)
        items = make_items(args.items, args.level)
        n_questions = sum(len(it.mcqs) for it in items)
        serve_args = ["--mode", args.mode, "--seed", "0", "--max-batch", str(args.batch), "--max-wait-ms", "5"]
        svc = ServiceProcess(reader, serve_args, env=env, log_path=workdir / "serve.log")
        print(f"items {len(items)} ({n_questions} questions), batch {args.batch}, clients {args.clients}, "
              f"reader {reader}; starting the service ...", flush=True)  # fmt: skip
        times: dict[str, list[float]] = {"in_process": [], "http_bulk": [], "http_single": []}
        wrong = 0
        with svc:
            engine.score(items[:2])  # warm-up
            for round_ in range(args.repeats):
                t, want = in_process(engine, items, args.batch)
                times["in_process"].append(t)
                t, got = asyncio.run(http_bulk(svc.url, items, args.batch))
                times["http_bulk"].append(t)
                wrong += mismatches(got, want)
                t, got = asyncio.run(http_single(svc.url, items, args.clients))
                times["http_single"].append(t)
                wrong += mismatches(got, want)
                print(f"round {round_ + 1}: " + ", ".join(f"{k} {len(items) / v[-1]:.2f} items/s"
                                                          for k, v in times.items()), flush=True)  # fmt: skip
    rate = {k: len(items) / min(v) for k, v in times.items()}
    summary = {
        "benchmark": "service_throughput",
        "machine": machine(),
        "items": len(items),
        "questions": n_questions,
        "batch": args.batch,
        "clients": args.clients,
        "repeats": args.repeats,
        "items_per_s": {k: round(v, 3) for k, v in rate.items()},
        "items_per_s_all_rounds": {k: [round(len(items) / t, 3) for t in v] for k, v in times.items()},
        "bulk_vs_in_process": round(rate["http_bulk"] / rate["in_process"], 3),
        "single_vs_bulk": round(rate["http_single"] / rate["http_bulk"], 3),
        # Within one round the modes ran back to back, so these show how much the load of other jobs moved them.
        "bulk_vs_in_process_per_round": [
            round(a / b, 3) for a, b in zip(times["in_process"], times["http_bulk"], strict=True)
        ],
        "single_vs_bulk_per_round": [
            round(a / b, 3) for a, b in zip(times["http_bulk"], times["http_single"], strict=True)
        ],
        "wrong_rewards": wrong,
        "targets_met": rate["http_bulk"] >= 0.9 * rate["in_process"]
        and rate["http_single"] >= 0.5 * rate["http_bulk"]
        and wrong == 0,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
