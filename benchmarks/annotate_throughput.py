"""Annotation throughput: the batched transformers backend against a one-item-at-a-time loop, side by side.

One captioner (the tiny Qwen2.5-VL of ``caprl models tiny``: same weights, same processor), the same shapes-world
images, greedy decoding, the same ``max_new_tokens``, measured in one run:

(a) batched: ``caprl.annotate.annotate`` with ``TransformersCaptioner(batch_size=B)``: B images per ``generate``
    call (left padding; here all images have one size, so no padding), media decoded ahead in threads, records
    written to parquet shards through the write-ahead log: the whole annotation path.
(b) loop: what one writes without the framework: for each image, open it, call the same captioner on that one
    request (``batch_size=1``), append a jsonl line.

Both produce the same captions (checked: greedy, equal-size images, so batching changes nothing), so the ratio of
their wall times is the ratio of throughputs for the same work. Tokens generated are counted from the captions.

Usage: .venv/bin/python benchmarks/annotate_throughput.py [--images 48] [--batch-size 16] [--max-new-tokens 64]
       [--threads 1]. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks._common import machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 gives stable figures when shared)")
    parser.add_argument("--models", type=Path, default=None, help="tiny models dir (default: built in a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from caprl.annotate import annotate, open_source, read_annotations
    from caprl.annotate.sources import load_item_media
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.models import build_tiny_models
    from caprl.synth import generate_image_dataset

    work = Path(tempfile.mkdtemp(prefix="caprl-annotate-bench-"))
    models = args.models or build_tiny_models(work / "models", seed=0).captioner.parent
    data = generate_image_dataset(args.images, work / "shapes", progress=False)
    source = open_source(data)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    cap = TransformersCaptioner(str(models / "captioner"), batch_size=args.batch_size, device="cpu")
    tokenizer = cap.processor.tokenizer

    # Warm-up (first-call allocations, lazy imports), on an image that is not timed twice in a way that matters.
    warm = load_item_media(source.items[0], source.root)
    cap.caption([CaptionRequest(media=warm, prompt=source.items[0].prompt)] * 2, settings)

    # (a) the batched annotation path
    cap.batch_size = args.batch_size
    start = time.perf_counter()
    summary = annotate(source, cap, work / "batched", settings=settings, batch_size=args.batch_size, shard_size=1000)
    t_batched = time.perf_counter() - start
    batched = [r.captions[0] for r in read_annotations(work / "batched")]
    assert summary.ok == args.images

    # (b) one item at a time
    cap.batch_size = 1
    loop_out = work / "loop.jsonl"
    start = time.perf_counter()
    with open(loop_out, "w", encoding="utf-8") as f:
        for item in source.items:
            media = load_item_media(item, source.root)
            text = cap.caption([CaptionRequest(media=media, prompt=item.prompt, id=item.id)], settings)[0][0]
            f.write(json.dumps({"id": item.id, "caption": text}) + "\n")
            f.flush()
    t_loop = time.perf_counter() - start
    looped = [json.loads(line)["caption"] for line in loop_out.read_text().splitlines()]

    tokens = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in batched)
    result = {
        "benchmark": "annotate_throughput",
        "images": args.images,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "same_captions": batched == looped,
        "tokens_generated": tokens,
        "batched_s": round(t_batched, 3),
        "loop_s": round(t_loop, 3),
        "batched_items_per_s": round(args.images / t_batched, 3),
        "loop_items_per_s": round(args.images / t_loop, 3),
        "speedup": round(t_loop / t_batched, 2),
        "target": 3.0,
        "machine": machine(),
    }
    print(
        f"batched (B={args.batch_size}): {t_batched:.2f} s, {args.images / t_batched:.2f} images/s | "
        f"loop: {t_loop:.2f} s, {args.images / t_loop:.2f} images/s | speedup {t_loop / t_batched:.2f}x | "
        f"same captions: {batched == looped}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
