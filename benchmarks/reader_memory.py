"""The reward service's allocator settings (``caprl.server.process.MALLOC_ENV``): the same reward calls in two
child processes of one run, with glibc's defaults and with ``MALLOC_ENV``; prints each side's seconds and the
ratio, and checks that both sides gave the same rewards to the last digit.

Workload (what the demo's reader does): shapes-world held-out images (seed 1000) read from their detailed
reference captions; a GRPO-sized call (8 captions x 4 questions, soft) and a held-out-reading-sized call (12
images, every question, argmax), each after one warm-up call, repeated ``--repeats`` times (best time kept).
The reader computes in this CPU's precision (``caprl.readers.cpu``; ``CAPRL_CPU_DTYPE`` and the AVX2 emulation
variables pass through to the children).

Usage: .venv/bin/python benchmarks/reader_memory.py [--reader qwen2.5-coder-1.5b-instruct] [--repeats 2]
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402


def child(reader_name: str, repeats: int) -> dict:
    from caprl.data.io import read_dataset
    from caprl.models.resolve import resolve_model
    from caprl.readers import load_reader
    from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem
    from caprl.synth import generate_image_dataset

    with tempfile.TemporaryDirectory() as tmp:  # the captions and questions are all the calls need
        ds = read_dataset(generate_image_dataset(14, Path(tmp) / "heldout", seed=1000, progress=False))
        samples = list(ds.samples)
    items = [RewardItem(caption=x.references["detailed"], mcqs=x.mcqs, modality="image", id=x.id) for x in samples]
    reader = load_reader(str(resolve_model(reader_name)))
    grpo = RewardEngine(reader, RewardConfig(mode="soft", n_questions=4, question_draw="item", seed=1))
    reading = RewardEngine(reader, RewardConfig(mode="hard", hard_choice="argmax", n_questions=None, seed=1))
    grpo_items = [x for x in items[:2] for _ in range(4)]
    grpo.score(items[12:14])  # warm-up: loads kernels, keeps the template prefix
    out: dict = {"precision": reader.precision}
    for name, engine, batch in (("grpo_call_s", grpo, grpo_items), ("reading_call_s", reading, items[:12])):
        times, rewards = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            results = engine.score(batch)
            times.append(time.perf_counter() - start)
            rewards = [r.reward for r in results]
        out[name] = round(min(times), 3)
        out[name.replace("_s", "_rewards")] = rewards
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.reader, args.repeats)))
        return
    from caprl.server.process import MALLOC_ENV

    base = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    sides = {}
    for side, env in (("glibc defaults", base), ("MALLOC_ENV", {**base, **MALLOC_ENV})):
        cmd = [sys.executable, __file__, "--child", "--reader", args.reader, "--repeats", str(args.repeats)]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        sides[side] = json.loads(run.stdout.strip().splitlines()[-1])
        print(side, {k: v for k, v in sides[side].items() if not k.endswith("_rewards")}, flush=True)
    a, b = sides["glibc defaults"], sides["MALLOC_ENV"]
    same = a["grpo_call_rewards"] == b["grpo_call_rewards"] and a["reading_call_rewards"] == b["reading_call_rewards"]
    result = {
        "machine": machine(),
        "emulate": os.environ.get("CAPRL_EMULATE_CPU"),
        "precision": a["precision"],
        "grpo_call_s": [a["grpo_call_s"], b["grpo_call_s"]],
        "reading_call_s": [a["reading_call_s"], b["reading_call_s"]],
        "speedup_grpo_call": round(a["grpo_call_s"] / b["grpo_call_s"], 3),
        "speedup_reading_call": round(a["reading_call_s"] / b["reading_call_s"], 3),
        "same_rewards": same,
    }
    print(
        f"speed-up with MALLOC_ENV: GRPO-sized call {result['speedup_grpo_call']}x, reading-sized call "
        f"{result['speedup_reading_call']}x; same rewards: {same}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
