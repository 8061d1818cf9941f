"""Stress test of the shapes-world video encoder's determinism: the same scenes encoded many times, in many fresh
processes, while other processes keep every core busy; every mp4 must have the same sha256 as every other encode of
its scene.

Each of ``--processes`` worker processes (default 12) is a fresh interpreter (``spawn``, one task per process, so
each has its own address-space layout, str hash seed and heap history) that renders and encodes the video scenes
``0 .. --scenes-1`` (default 8) ``--reps`` times each (default 3) with ``caprl.synth.render_mp4``. ``--parallel``
workers run at once (default 2), and ``--load`` busy-loop processes (default: one per core) run for the whole test,
so the encoders are preempted and migrate between cores.

Printed: the machine, the encodes done, the scenes that gave more than one distinct mp4, and the mismatches (encodes
whose bytes differ from the most common encode of their scene). Exit status 1 on any mismatch.

Usage: .venv/bin/python benchmarks/synth_video_determinism.py [--processes 12] [--reps 3] [--scenes 8] [--load 2]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import time
from collections import Counter


def _busy(stop) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def _encode_scenes(task: tuple[int, int]) -> dict[int, list[str]]:
    n_scenes, reps = task
    from caprl.synth import make_video_scene, render_mp4

    scenes = [make_video_scene(seed) for seed in range(n_scenes)]
    digests: dict[int, list[str]] = {scene.seed: [] for scene in scenes}
    for _ in range(reps):
        for scene in scenes:
            digests[scene.seed].append(hashlib.sha256(render_mp4(scene)).hexdigest())
    return digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=12, help="fresh worker processes, one after another")
    parser.add_argument("--parallel", type=int, default=2, help="worker processes running at once")
    parser.add_argument("--reps", type=int, default=3, help="encodes of each scene in each worker")
    parser.add_argument("--scenes", type=int, default=8, help="video scenes (seeds 0..N-1)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy-loop processes running meanwhile")
    args = parser.parse_args()

    import av

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    load = [ctx.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in load:
        p.start()
    start = time.perf_counter()
    try:
        with ctx.Pool(args.parallel, maxtasksperchild=1) as pool:
            results = pool.map(_encode_scenes, [(args.scenes, args.reps)] * args.processes, chunksize=1)
    finally:
        stop.set()
        for p in load:
            p.join()
    elapsed = time.perf_counter() - start

    per_scene: dict[int, Counter[str]] = {}
    for digests in results:
        for seed, hashes in digests.items():
            per_scene.setdefault(seed, Counter()).update(hashes)
    encodes = sum(sum(c.values()) for c in per_scene.values())
    mismatches = sum(sum(c.values()) - c.most_common(1)[0][1] for c in per_scene.values())
    unstable = {seed: {h[:12]: n for h, n in c.items()} for seed, c in sorted(per_scene.items()) if len(c) > 1}

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; PyAV {av.__version__}, "
        f"libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}"
    )
    print(
        f"{encodes} encodes ({args.processes} processes x {args.reps} reps x {args.scenes} scenes) "
        f"with {args.load} busy-loop processes, {elapsed:.0f} s"
    )
    for seed, counts in unstable.items():
        print(f"  scene {seed}: {len(counts)} distinct mp4s {counts}")
    print(f"mismatches: {mismatches}")
    print(
        json.dumps(
            {
                "encodes": encodes,
                "processes": args.processes,
                "reps": args.reps,
                "scenes": args.scenes,
                "load": args.load,
                "seconds": round(elapsed, 1),
                "mismatches": mismatches,
                "unstable_scenes": sorted(unstable),
            }
        )
    )
    raise SystemExit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
