"""HTTP requests per 64 samples when verl's own reward loop calls caprl's reward function.

caprl's client-side batcher (``caprl.verl.remote.Batcher``: ``max_batch`` 256, ``max_wait_ms`` 20) coalesces the
calls made on one event loop within 20 ms of the first into one bulk request. How many requests a training step
sends depends on how verl hands samples over. In verl 0.9.1 (read from its source):

- ``RayPPOTrainer`` builds a ``RewardLoopManager`` that starts ``reward.num_workers`` (8 by default)
  ``RewardLoopWorker`` Ray actors, each with its own event loop (hence its own batcher);
- with no reward model (caprl's case), the agent loop streams rewards: as each trajectory finishes, its
  ``_compute_score`` sends that one sample to ``random.choice(reward_loop_worker_handles).compute_score.remote``;
- without streaming, ``RewardLoopManager.compute_rm_score`` splits the batch into ``num_workers`` equal chunks, one
  ``compute_score_batch`` per worker.

Measured here with verl's own classes (``RewardLoopWorker``, its reward managers, ``RewardLoopManager`` and its Ray
actors) against caprl's reward service with the tiny reader on loopback, counting the service's
``caprl_requests_total`` for ``/v1/rewards``; 64 samples = 8 exported shapes-world images x 8 captions:

(a) all 64 at once to one worker (one event loop), each its own ``compute_score`` call;
(b) 8 Ray workers: all 64 at once, each to a random worker as the agent loop dispatches them, and verl's
    non-streaming ``compute_rm_score`` (8 chunks);
(c) 8 Ray workers, samples arriving one at a time at random worker, finish times uniform over a window (a
    rollout's completions spread over its generation time; windows of 0.32, 1.28 and 5.12 s give mean gaps of 5,
    20 and 80 ms).

Usage: .venv/bin/python benchmarks/verl_requests.py  (needs ``make verl-env``; about 2 minutes on 2 cores, most
of it starting 16 Ray actors). The process re-runs itself in ``.venv-verl`` for the verl part; the last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_ROWS, N_CAPTIONS, N_WORKERS = 8, 8, 8
WINDOWS = (0.32, 1.28, 5.12)
FUNCTIONS = ("compute_score_async", "compute_score")


# ------------------------------------------------------------------------------------------------ main venv side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--verl-python", default=os.environ.get("CAPRL_VERL_PYTHON", str(ROOT / ".venv-verl/bin/python"))
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not Path(args.verl_python).exists():
        sys.exit(f"{args.verl_python} is missing: run `make verl-env`")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("CAPRL_CPU_DTYPE", "float32")
    sys.path.insert(0, str(ROOT))

    from caprl.data.export import export_verl
    from caprl.models import build_tiny_models
    from caprl.readers import load_reader
    from caprl.reward.engine import RewardEngine
    from caprl.server.serve import BackgroundServer
    from caprl.synth import generate_image_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = build_tiny_models(tmp / "models", seed=0)
        ds = generate_image_dataset(N_ROWS, tmp / "images", seed=5, progress=False)
        parquet = export_verl(ds, tmp / "images.parquet").path
        with BackgroundServer(RewardEngine(load_reader(str(models.reader)))) as srv:
            spec = {"url": srv.url, "parquet": str(parquet), "tokenizer": str(models.captioner), "seed": args.seed}
            (tmp / "spec.json").write_text(json.dumps(spec))
            env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
            # progress goes to stderr as it happens
            cmd = [args.verl_python, __file__, "--inside-verl", str(tmp / "spec.json"), str(tmp / "out.json")]
            if subprocess.run(cmd, env=env).returncode != 0:
                sys.exit("the verl part failed (its traceback is above)")
            result = json.loads((tmp / "out.json").read_text())
    print(f"requests per {N_ROWS * N_CAPTIONS} samples (max_batch 256, max_wait_ms 20); wall seconds in brackets")
    for name, row in result["scenarios"].items():
        cells = "  ".join(f"{f}: {row[f]['requests']:>2} ({row[f]['seconds']:.2f} s)" for f in FUNCTIONS if f in row)
        print(f"{name:<58} {cells}")
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------------ inside .venv-verl


def _requests(url: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("caprl_requests_total{") and 'endpoint="/v1/rewards"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _trajectories(spec: dict) -> list[tuple[list[int], list[int], dict]]:
    """64 finished trajectories: (prompt ids, response ids ending in the end-of-turn token, the row's fields)."""
    import pyarrow.parquet as pq
    from verl.utils import hf_tokenizer

    tok = hf_tokenizer(spec["tokenizer"])
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    out = []
    for row in pq.read_table(spec["parquet"]).to_pylist():
        refs = list(json.loads(row["extra_info"]["references"]).values())
        prompt = tok(row["prompt"][0]["content"], add_special_tokens=False)["input_ids"]
        fields = {k: row[k] for k in ("data_source", "reward_model", "extra_info", "ability")}
        for j in range(N_CAPTIONS):
            caption = refs[j % len(refs)] + (" " + refs[0] if j >= len(refs) else "")
            out.append((prompt, tok(caption, add_special_tokens=False)["input_ids"] + [eos], fields))
    return out


def _proto(trajectories: list[tuple[list[int], list[int], dict]]):
    """A DataProto of trajectories as verl lays them out: prompts left-padded, responses right-padded."""
    import copy

    import numpy as np
    import torch
    from verl.protocol import DataProto

    P = max(len(p) for p, _, _ in trajectories)
    R = max(len(r) for _, r, _ in trajectories)
    n = len(trajectories)
    prompts, responses = torch.zeros((n, P), dtype=torch.long), torch.zeros((n, R), dtype=torch.long)
    mask = torch.zeros((n, P + R), dtype=torch.long)
    for i, (p, r, _) in enumerate(trajectories):
        prompts[i, P - len(p) :], responses[i, : len(r)] = torch.tensor(p), torch.tensor(r)
        mask[i, P - len(p) : P + len(r)] = 1
    fields = [copy.deepcopy(f) for _, _, f in trajectories]
    non_tensor = {k: np.array([f[k] for f in fields] + [None], dtype=object)[:-1] for k in fields[0]}
    non_tensor["__num_turns__"] = np.array([2] * n)
    non_tensor["tool_extra_fields"] = np.array([{} for _ in range(n)] + [None], dtype=object)[:-1]
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], 1),
                 "attention_mask": mask},
        non_tensors=non_tensor,
    )  # fmt: skip


def _config(spec: dict, function: str, manager: str = "naive", num_workers: int = 1):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": spec["tokenizer"], "tokenizer_path": None}},
            "reward": {
                "num_workers": num_workers,
                "reward_manager": {"name": manager, "source": "register", "module": {"path": None, "name": None}},
                "custom_reward_function": {
                    "path": "pkg://caprl.verl.reward",
                    "name": function,
                    "reward_kwargs": {"urls": [spec["url"]], "max_batch": 256, "max_wait_ms": 20},
                },
                "reward_model": {"enable": False, "enable_resource_pool": False},
                "sandbox_fusion": None,
            },
        }
    )


def inside_verl(spec_path: str, out_path: str) -> None:
    import asyncio
    import random
    import time

    import ray
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager, RewardLoopWorker

    spec = json.loads(Path(spec_path).read_text())
    url = spec["url"]
    rng = random.Random(spec["seed"])
    trajectories = _trajectories(spec)
    samples = [_proto([t]) for t in trajectories]  # what the agent loop sends per finished trajectory
    scenarios: dict[str, dict] = {}

    def record(name: str, function: str, run) -> None:
        before, start = _requests(url), time.perf_counter()
        scores = run()
        seconds, requests = time.perf_counter() - start, _requests(url) - before
        assert len(scores) == len(samples) and all(isinstance(s, float) for s in scores), scores
        scenarios.setdefault(name, {})[function] = {"requests": int(requests), "seconds": round(seconds, 3)}
        print(f"{name} / {function}: {int(requests)} requests, {seconds:.2f} s", file=sys.stderr, flush=True)

    # (a) one worker, one event loop: every sample its own compute_score call, all in flight together.
    for manager in ("naive", "rate_limited"):
        for function in FUNCTIONS:
            worker = RewardLoopWorker(_config(spec, function, manager))

            def run_one(worker=worker):
                async def all_at_once():
                    return await asyncio.gather(*(worker.compute_score(s) for s in samples))

                return [float(o["reward_score"]) for o in worker.loop.run_until_complete(all_at_once())]

            label = "" if manager == "naive" else f", {manager} manager (max_concurrent 1)"
            record(f"(a) 1 worker, all at once{label}", function, run_one)

    # (b), (c): verl's RewardLoopManager and its 8 Ray actors, as the trainer starts them.
    ray.init(num_cpus=N_WORKERS + 2, include_dashboard=False, log_to_driver=False)
    try:
        for function in FUNCTIONS:
            manager = RewardLoopManager(_config(spec, function, num_workers=N_WORKERS))
            handles = manager.reward_loop_workers
            ray.get([h.compute_score.remote(samples[0]) for h in handles])  # started and warm (not counted)

            def streamed(window: float, handles=handles):
                # the agent loop: each finished trajectory to random.choice(handles).compute_score.remote(...)
                async def go():
                    times = sorted(rng.uniform(0, window) for _ in samples)
                    start = time.perf_counter()

                    async def one(sample, at):
                        await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                        return await rng.choice(handles).compute_score.remote(sample)

                    return await asyncio.gather(*(one(s, t) for s, t in zip(samples, times, strict=True)))

                return [float(o["reward_score"]) for o in asyncio.run(go())]

            record(f"(b) {N_WORKERS} workers, all at once, random worker each", function, lambda: streamed(0.0))

            def chunked(manager=manager):
                out = manager.compute_rm_score(_proto(trajectories))
                rm = out.batch["rm_scores"]
                return [float(r.sum()) for r in rm]

            record(f"(b) {N_WORKERS} workers, compute_rm_score (8 chunks)", function, chunked)
            for window in WINDOWS:
                name = f"(c) {N_WORKERS} workers, one at a time over {window:.2f} s ({1000 * window / 64:.0f} ms gaps)"
                record(name, function, lambda window=window: streamed(window))
            for h in handles:
                ray.kill(h)
    finally:
        ray.shutdown()
    Path(out_path).write_text(json.dumps({"samples": len(samples), "workers": N_WORKERS, "scenarios": scenarios}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inside-verl":
        inside_verl(sys.argv[2], sys.argv[3])
    else:
        main()
