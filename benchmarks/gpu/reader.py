"""Section 1, the reader: letter scoring with the prefix tree against CapRL-style batched ``generate``.

Both paths run through ``RewardEngine.score`` on a ``TransformersReader`` wrapping the same random-weight model, on
the same captions (``sizes.caption_tokens`` long, ``sizes.questions`` MCQs each, every question asked once):

- ``score``: caprl's default reward (``RewardConfig()``): the letters' probabilities from one forward pass per
  question, the prompts' prefix tree packed into rows, the shared template kept across calls.
- ``generate``: CapRL's reader call (the ``caprl`` preset: its prompt with two worked examples and the answer
  lead-in, 10 new tokens sampled at temperature 0.6, the first capital letter taken), through the reader's batched
  ``generate`` (left padding, one seeded sampler per prompt).

For each path the reader's ``batch_tokens`` (tokens in one forward) is swept upwards until questions/s stops rising
by more than 10%, memory runs out, or the time box is spent. Useful FLOPs as in benchmarks/reader_speed.py
(``benchmarks._common.packed_flops``; for ``generate`` the prefill of every prompt plus the decode steps), compared
with ``torch.matmul`` on the model's own linear shapes in its dtype, measured in the same run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from benchmarks._common import matmul_flops, packed_flops
from benchmarks.gpu.context import Bench, free_memory
from benchmarks.gpu.schema import ReaderModel, ReaderPoint, ReaderSection
from benchmarks.gpu.workload import caption_tokens, make_items

RELATIVE_TIME = {"qwen2.5-1.5b": 1.0, "qwen2.5-7b": 3.0}
"""How the section's time is shared between the readers (the 7B computes ~5x the 1.5B per token)."""
SCORE_SHARE = 0.35
"""Of a reader's time, the share for the scoring path (generate computes every prompt in full, and decodes)."""
KNEE = 1.10
NEW_TOKENS = 10


def run(b: Bench, out: ReaderSection) -> None:
    from benchmarks.gpu.shapes import build_reader

    names = b.sizes.readers
    for i, name in enumerate(names):
        weight = RELATIVE_TIME.get(name, 1.0)
        share = weight / sum(RELATIVE_TIME.get(n, 1.0) for n in names[i:])
        deadline = time.perf_counter() + b.left() * share
        print(f"[reader] building {name} on {b.device}", flush=True)
        built = build_reader(name, b.tokenizer(), device=b.device, dtype=b.dtype)
        try:
            out.models.append(measure(b, built.model, name, built.params, deadline))
        finally:
            del built
            free_memory()


def measure(b: Bench, model: Any, name: str, params: int, deadline: float) -> ReaderModel:
    from caprl.reward.engine import RewardConfig
    from caprl.reward.presets import PRESETS

    s = b.sizes
    tok = b.tokenizer()
    cfg = model.config
    h, f = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    m = s.matmul_rows
    shapes = [(m, h, h), (m, h, kv), (m, h, kv), (m, h, h), (m, h, f), (m, h, f), (m, f, h)]
    mm = matmul_flops(shapes, dtype=b.dtype, seconds=0.02 if b.tiny else 0.3, device=b.device)["combined"]
    items = make_items(s.score_captions, tok, tokens=s.caption_tokens, questions=s.questions, seed=1)
    lengths = caption_tokens(items, tok)
    score_cfg = RewardConfig(seed=0)
    # CapRL's reader call, every question once (the preset draws 8 with replacement; here both paths ask the same 8).
    generate_cfg = RewardConfig.model_validate({**PRESETS["caprl"], "n_questions": None, "max_new_tokens": NEW_TOKENS})
    now = time.perf_counter()
    score = sweep(b, model, "score", score_cfg, items, mm, deadline=now + SCORE_SHARE * (deadline - now))
    generate = sweep(b, model, "generate", generate_cfg, items[: s.generate_captions], mm, deadline=deadline)
    best_s = max(score, key=lambda p: p.questions_per_s)
    best_g = max(generate, key=lambda p: p.questions_per_s)
    print(f"[reader] {name}: score {best_s.questions_per_s:.1f} q/s, generate {best_g.questions_per_s:.1f} q/s",
          flush=True)  # fmt: skip
    return ReaderModel(
        model=name,
        params=params,
        captions=len(items),
        questions_per_caption=s.questions,
        caption_tokens_min=min(lengths),
        caption_tokens_max=max(lengths),
        matmul_tflops=mm / 1e12,
        points=score + generate,
        score_questions_per_s=best_s.questions_per_s,
        score_batch_tokens=best_s.batch_tokens,
        generate_questions_per_s=best_g.questions_per_s,
        generate_batch_tokens=best_g.batch_tokens,
        score_vs_generate=best_s.questions_per_s / best_g.questions_per_s,
        score_matmul_share=best_s.matmul_share,
        generate_matmul_share=best_g.matmul_share,
    )


def sweep(
    b: Bench, model: Any, path: str, config: Any, items: list, mm: float, *, deadline: float
) -> list[ReaderPoint]:
    """Questions/s of ``path`` at each ``batch_tokens`` of the sizes, upwards to the knee."""
    from caprl.readers.transformers import TransformersReader
    from caprl.reward.engine import RewardEngine

    tok = b.tokenizer()
    base = TransformersReader.from_model(model, tok)
    engine = RewardEngine(base, config)
    asks = engine._plan(items)
    messages = [engine.messages(items[a.item].caption, a.shown, items[a.item].modality) for a in asks]
    token_ids = base.encode(messages)
    flops, call_tokens = useful_flops(model, base, token_ids, path)
    points: list[ReaderPoint] = []
    last_cost = 0.0
    for bt in b.sizes.batch_tokens:
        if points and points[-1].batch_tokens >= call_tokens:
            break  # one forward already held the whole call: a larger budget changes nothing
        if points and deadline - time.perf_counter() < 1.5 * last_cost:
            break
        reader = TransformersReader.from_model(model, tok, batch_tokens=bt, name=f"{path}@{bt}")
        engine = RewardEngine(reader, config)
        t0 = time.perf_counter()
        try:
            # Warm-up on enough captions to fill one forward of this size (kernels, allocator, prefix cache).
            engine.score(items[: max(1, min(len(items), math.ceil(bt * len(items) / call_tokens)))])
            b.sync()
            start, reps = time.perf_counter(), 0
            while True:
                engine.score(items)
                reps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= b.sizes.min_measure_s or time.perf_counter() + elapsed > deadline:
                    break
        except torch.cuda.OutOfMemoryError:
            print(f"[reader] {path} batch_tokens {bt}: out of memory; the sweep stops", flush=True)
            del reader, engine
            free_memory()
            break
        last_cost = time.perf_counter() - t0
        questions = len(asks) * reps
        rate = questions / elapsed
        points.append(
            ReaderPoint(
                path=path,
                batch_tokens=bt,
                questions=questions,
                seconds=elapsed,
                questions_per_s=rate,
                tflops=flops * reps / elapsed / 1e12,
                matmul_share=flops * reps / elapsed / mm,
            )
        )
        print(f"[reader]   {path:<8} batch_tokens {bt:>6}: {rate:9.1f} q/s, {points[-1].matmul_share:.1%} of matmul",
              flush=True)  # fmt: skip
        if len(points) >= 2 and rate < KNEE * points[-2].questions_per_s:
            break
    if not points:
        raise RuntimeError(f"{path}: no batch size could be measured in the time left")
    return points


def useful_flops(model: Any, reader: Any, token_ids: list[list[int]], path: str) -> tuple[float, int]:
    """FLOPs that one call of ``path`` needs, and the tokens it computes."""
    from caprl.readers.transformers import TransformersReader

    if path == "score":
        kept = reader._cached_prefix(token_ids)  # what the reader keeps across calls is not computed again
        rows = reader.plan(token_ids, prefix_tokens=len(kept[0]) if kept else 0)
        counted = packed_flops(model, token_ids, rows)
        return counted["total"], int(counted["tokens"])
    plain = TransformersReader.from_model(model, reader.tokenizer, share_prefix=False)
    prefill = packed_flops(model, token_ids, plain.plan(token_ids))
    return prefill["total"] + decode_flops(model, [len(t) for t in token_ids], NEW_TOKENS), int(
        prefill["tokens"] + NEW_TOKENS * len(token_ids)
    )


def decode_flops(model: Any, lengths: list[int], new_tokens: int) -> float:
    """FLOPs of the decode steps after a prefill of prompts of ``lengths``: the first new token comes out of the
    prefill; each later one is a forward of one token that attends to the prompt and the tokens before it, and
    the LM head over the full vocabulary."""
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    layer_params = sum(p.numel() for p in model.model.layers[0].parameters() if p.ndim == 2)
    steps = new_tokens - 1
    n = len(lengths)
    pairs = sum(length * steps + steps * (steps + 1) // 2 for length in lengths)
    linear = 2.0 * layer_params * cfg.num_hidden_layers * n * steps
    attention = 4.0 * cfg.num_attention_heads * head_dim * cfg.num_hidden_layers * pairs
    head = 2.0 * cfg.hidden_size * cfg.vocab_size * n * steps
    return linear + attention + head
