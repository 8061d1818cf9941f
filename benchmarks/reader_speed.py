"""Reader speed on this CPU: questions per second of a real reader through the RewardEngine, and the share of the
machine's measured matmul FLOP/s it reaches, for several settings side by side in one run.

Workload: the reader check's held-out shapes-world items (``caprl.eval.reader_check``), every question asked from
the exhaustive and the terse reference captions, caprl's default reward prompt (shuffled options plus the "cannot
be answered" option), ``RewardEngine.score`` on all items of a level in one call — what the reward service does
with a batch.

Variants (each a full pass over the workload; the model is loaded once per dtype):
- ``packed``: the current reader: the prompts' prefix tree packed into rows under one tree mask (row_tokens 1024).
- ``packed-512`` / ``packed-2048``: other row lengths.
- ``plain``: no prefix sharing (every prompt its own right-padded row).
- ``levels``: the reader before packing (prefix tree computed level by level, each level's KV copied into the
  next), loaded from git history (commit ``PREVIOUS``), when the repository is a git checkout.
- ``unmerged``: the packed reader as of commit ``UNMERGED`` (before rows were merged into full forwards and the
  shared template kept across calls), from git history likewise.
in float32, bfloat16 and int8 (``--dtypes``; int8: the float32 model with its decoder linears converted by
``caprl.readers.int8``), with ``--threads`` intra-op threads. An int8 row's matmul rate is ``torch._int_mm``'s
on the same shapes (int8 x int8 -> int32).

Useful FLOPs, as in benchmarks/reward_throughput.py: ``2 * P_layer * L * T`` (linear layers over the T tokens a
variant computes) + ``4 * heads * head_dim * L * K`` (attention over the K visible (query, key) pairs) + the
lm_head at the answer positions; the achieved rate is compared with ``torch.matmul`` on the model's own linear
shapes in the same dtype, measured in the same run.

Usage: .venv/bin/python benchmarks/reader_speed.py [--reader qwen2.5-coder-1.5b-instruct] [--items 4]
       [--dtypes float32,bfloat16] [--variants packed,plain,levels] [--threads 2]
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import machine, matmul_flops, packed_flops  # noqa: E402

PREVIOUS = "8735725"
"""The last commit with the level-by-level prefix tree (KV copied between levels)."""
UNMERGED = "3cb16e2"
"""The last commit whose packed rows were batched as they came (padded to the longest) and recomputed the
template in every row."""
ROOT = Path(__file__).resolve().parents[1]


def previous_reader_class(commit: str = PREVIOUS):
    """``TransformersReader`` as of ``commit``, imported from git history (None outside a git checkout)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:caprl/readers/transformers.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / f"reader_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"reader_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TransformersReader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--items", type=int, default=4, help="held-out items (6-8 questions each)")
    ap.add_argument("--levels", default="exhaustive,terse")
    ap.add_argument("--dtypes", default="float32,bfloat16,int8")
    ap.add_argument("--variants", default="packed,unmerged,packed-512,packed-2048,plain,levels")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from caprl.eval.reader_check import check_items
    from caprl.readers.transformers import TransformersReader
    from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem
    from caprl.reward.prompt import build_messages
    from caprl.store.resolve import resolve_model

    hf_logging.disable_progress_bar()
    folder = resolve_model(args.reader)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    items = check_items(args.items)
    levels = args.levels.split(",")
    previous = previous_reader_class() if "levels" in args.variants else None
    unmerged = previous_reader_class(UNMERGED) if "unmerged" in args.variants else None
    print(f"machine: {machine()}")
    print(f"reader: {folder}; {args.items} items; levels {levels}", flush=True)
    results = []
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32 if dtype == torch.int8 else dtype)
        model.eval()
        if dtype == torch.int8:
            from caprl.readers.int8 import quantize_linear_int8

            quantize_linear_int8(model)
        cfg = model.config
        h, f = cfg.hidden_size, cfg.intermediate_size
        kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
        shapes = [(1024, h, h), (1024, h, kv), (1024, h, kv), (1024, h, h), (1024, h, f), (1024, h, f), (1024, f, h)]
        mm = matmul_flops(shapes, dtype=dtype)["combined"]
        print(f"[{dtype_name}] matmul on the model's shapes: {mm / 1e9:.1f} GFLOP/s", flush=True)
        for variant in args.variants.split(","):
            if variant in ("levels", "unmerged"):
                cls = previous if variant == "levels" else unmerged
                if cls is None:
                    print(f"  {variant}: skipped (no git history)")
                    continue
                reader = cls.from_model(model, tokenizer, name=variant)
            else:
                options = {"share_prefix": variant != "plain"}
                if variant.startswith("packed-"):
                    options["row_tokens"] = int(variant.split("-")[1])
                reader = TransformersReader.from_model(model, tokenizer, name=variant, **options)
            engine = RewardEngine(reader, RewardConfig(mode="soft"))
            for level in levels:
                batch = [
                    RewardItem(caption=it.captions[level], mcqs=list(it.mcqs), modality=it.modality, id=it.id)
                    for it in items
                ]
                engine.score(batch[:1])  # warm-up
                start = time.perf_counter()
                scored = engine.score(batch)
                seconds = time.perf_counter() - start
                n = sum(len(r.questions) for r in scored)
                asks = engine._plan(batch)
                messages = [
                    build_messages(batch[a.item].caption, a.shown, modality=batch[a.item].modality) for a in asks
                ]
                token_ids = TransformersReader.from_model(model, tokenizer).encode(messages)
                packed = TransformersReader.from_model(model, tokenizer, share_prefix=variant != "plain")
                if variant.startswith("packed-"):
                    packed.row_tokens = int(variant.split("-")[1])
                # What the variant computes: the current reader leaves out the template it keeps across calls.
                kept = packed._cached_prefix(token_ids) if variant.startswith("packed") else None
                plan = packed.plan(token_ids, prefix_tokens=len(kept[0]) if kept else 0)
                flops = packed_flops(model, token_ids, plan)["total"] if variant != "levels" else None
                row = {
                    "dtype": dtype_name,
                    "variant": variant,
                    "level": level,
                    "questions": n,
                    "seconds": round(seconds, 2),
                    "questions_per_s": round(n / seconds, 3),
                    "prompt_tokens": sum(map(len, token_ids)),
                    "matmul_gflops": round(mm / 1e9, 1),
                }
                if flops:
                    row["achieved_gflops"] = round(flops / seconds / 1e9, 1)
                    row["flops_fraction"] = round(flops / seconds / mm, 3)
                results.append(row)
                rate = f"; {flops / seconds / 1e9:5.1f} GFLOP/s = {flops / seconds / mm:.0%} of matmul" if flops else ""
                print(f"  {variant:<12} {level:<10} {n} q, {seconds:6.1f} s, {n / seconds:5.2f} q/s{rate}", flush=True)
        del model
    print(json.dumps({"machine": machine(), "results": results}))


if __name__ == "__main__":
    main()
