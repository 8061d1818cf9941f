"""Prism read-stage throughput: our batched letter scoring against one generate call per item, same reader.

The read stage of ``caprl eval prism`` (``caprl.eval.read.run_read_stage``) is run three times over the same
cached captions and questions, each time under a fresh reader name so nothing is served from the records:

(a) ours: ``read_mode="score"``, 64 questions per reader call: the option letters' probabilities from one forward
    pass per question, questions about one caption next to each other so the transformers reader computes their
    shared prefix (instruction + caption) once; no decoding.
(b) loop: ``read_mode="generate"`` with ``read_batch=1``: one ``reader.generate`` call per question, greedy,
    up to 10 new tokens (the CapRL reader's budget), the letter read from the text with ``extract_choice``.
(c) loop, short: as (b) with at most 2 new tokens: what a trained reader that answers "B" and stops would cost,
    a lower bound for any generate path.

Items are (question, caption) pairs: every MCQ of ``--images`` shapes-world images, each with its "detailed"
reference caption (k = 1, no blind baseline). Reader: by default the Qwen2-architecture model of
``reward_throughput.py`` (hidden 512, 8 layers, 32768 vocabulary rows, 47M parameters, random weights, the
project's tokenizer); ``--reader PATH`` times any local checkpoint instead (e.g. ``models/tiny/reader``). A
random-weight reader rarely emits its end token, so (b) decodes close to 10 tokens per item; the JSON reports
the mean number of tokens (b) really decoded, counted at ``model.generate``.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_throughput.py [--images 8] [--threads 1] [--reader PATH]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine  # noqa: E402


class Oracle:
    """A captioner that returns each shapes image's reference caption (request ids start with the sample id)."""

    name = "reference-detailed"

    def __init__(self, references: dict[str, str]):
        self.references = references

    def caption(self, requests, settings=None):
        return [[self.references[r.id.rsplit("#", 1)[0]]] * settings.n for r in requests]


def build_reader(path: str | None, seed: int):
    from caprl.readers.transformers import TransformersReader

    if path:
        return TransformersReader(path), f"checkpoint {path}"
    from benchmarks.reward_throughput import build_reader_model
    from caprl.models import train_tokenizer

    tokenizer = train_tokenizer()
    model = build_reader_model(tokenizer, hidden=512, layers=8, intermediate=2048, vocab=32768, seed=seed)
    n = sum(p.numel() for p in model.parameters())
    return TransformersReader.from_model(model, tokenizer, name="bench-reader"), f"Qwen2 47M-class ({n / 1e6:.1f}M)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="shapes-world images (all their MCQs are asked)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--reader", default=None, help="a local reader checkpoint (default: the 47M benchmark reader)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from caprl.data.io import read_dataset
    from caprl.eval import DataPaths, PrismConfig, get_benchmark
    from caprl.eval.caption import run_caption_stage
    from caprl.eval.config import Lazy
    from caprl.eval.read import run_read_stage
    from caprl.synth import generate_image_dataset

    work = Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    data = generate_image_dataset(args.images, work / "shapes", seed=args.seed, progress=False)
    references = {s.id: s.references["detailed"] for s in read_dataset(data).samples}
    bench = get_benchmark("shapes-image")
    base = PrismConfig(benchmarks=[bench.name], out=work / "out", captioner=Oracle.name, k=1, baseline=False)
    items = bench.load_items(DataPaths(data={bench.name: str(data)}, env={}), base.out)
    run_caption_stage(bench, items, base, Lazy(Oracle(references), "captioner"))

    reader, reader_desc = build_reader(args.reader, args.seed)
    print(f"machine: {machine()}")
    print(f"reader: {reader_desc}; items: {len(items)} questions on {args.images} images, one caption each")

    # Count the tokens each generate call really decodes (a random reader's tokens may decode to no text).
    new_tokens: list[int] = []
    inner_generate = reader.model.generate

    def counting_generate(*a, **kw):
        out = inner_generate(*a, **kw)
        new_tokens.append(int(out.shape[1] - kw["input_ids"].shape[1]))
        return out

    reader.model.generate = counting_generate

    def timed(name: str, **kw) -> float:
        cfg = base.model_copy(update={"reader": name, **kw})
        start = time.perf_counter()
        written = run_read_stage(bench, items, cfg, Lazy(reader, "reader"))
        seconds = time.perf_counter() - start
        assert written == len(items), (written, len(items))
        print(f"{name}: {written} items in {seconds:.2f} s = {written / seconds:.2f} items/s")
        return written / seconds

    # A warm-up pass (not timed): first calls pay for allocations and lazy initialisation.
    run_read_stage(bench, items[:8], base.model_copy(update={"reader": "warm-up"}), Lazy(reader, "reader"))
    ours = timed("score-batched", read_mode="score", read_batch=64)
    new_tokens.clear()
    loop = timed("generate-loop", read_mode="generate", read_batch=1, read_max_new_tokens=10)
    loop_tokens = list(new_tokens)
    short = timed("generate-loop-2tok", read_mode="generate", read_batch=1, read_max_new_tokens=2)

    result = {
        "benchmark": "eval_throughput",
        "machine": machine(),
        "reader": reader_desc,
        "items": len(items),
        "images": args.images,
        "score_batched_items_per_s": round(ours, 3),
        "generate_loop_items_per_s": round(loop, 3),
        "generate_loop_2tok_items_per_s": round(short, 3),
        "speedup_vs_generate_loop": round(ours / loop, 2),
        "speedup_vs_generate_loop_2tok": round(ours / short, 2),
        "generate_loop_mean_new_tokens": round(sum(loop_tokens) / max(1, len(loop_tokens)), 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
