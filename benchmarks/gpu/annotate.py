"""Section 4, annotation: caprl's transformers captioner backend (``TransformersCaptioner``) at the policy's shape,
``sizes.annotate_batch`` images per ``generate`` call against one image at a time, greedy, up to
``sizes.annotate_new_tokens`` new tokens, on the same shapes-world images (``sizes.image_px`` px).

Tokens generated are counted from ``generate``'s output (tokens other than padding after the prompt), since
random weights can stop a caption early and the small tokenizer cannot spell every id of the real vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from benchmarks.gpu.context import Bench, free_memory
from benchmarks.gpu.schema import AnnotationSection


def count_tokens(model: Any, pad_id: int, counter: list[int]) -> Callable[..., Any]:
    """``model.generate`` that adds the new non-padding tokens of each call to ``counter[0]``."""
    generate = model.generate

    @wraps(generate)
    def counted(*args: Any, **kwargs: Any) -> Any:
        out = generate(*args, **kwargs)
        prompt = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        counter[0] += int((out[:, prompt:] != pad_id).sum())
        return out

    return counted


def run(b: Bench, out: AnnotationSection) -> None:
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.synth import make_image_scene, render_image

    s = b.sizes
    policy, _ = b.policy_dir()
    out.captioner, out.max_new_tokens, out.image_px, out.batch_size = (
        s.policy,
        s.annotate_new_tokens,
        s.image_px,
        s.annotate_batch,
    )
    images = [render_image(make_image_scene(7_000 + i, size=s.image_px)) for i in range(s.annotate_images)]
    prompt = "Please describe this image in detail."
    requests = [CaptionRequest(media=im, prompt=prompt, id=f"img{i}") for i, im in enumerate(images)]
    settings = GenerationSettings(max_new_tokens=s.annotate_new_tokens)
    cap = TransformersCaptioner(str(policy), device=b.device, batch_size=s.annotate_batch)
    tokens = [0]
    cap.model.generate = count_tokens(cap.model, cap._pad_token_id, tokens)
    try:
        cap.caption(requests[:2], GenerationSettings(max_new_tokens=8))  # warm-up
        b.sync()
        tokens[0] = 0
        start = time.perf_counter()
        cap.caption(requests, settings)
        batched_s = time.perf_counter() - start
        out.batched_captions, out.batched_captions_per_s = len(requests), len(requests) / batched_s
        out.batched_tokens_per_s = tokens[0] / batched_s
        print(f"[annotation] batched ({s.annotate_batch}): {len(requests) / batched_s:.2f} captions/s", flush=True)

        cap.batch_size = 1
        tokens[0], done = 0, 0
        start = time.perf_counter()
        for request in requests[: s.annotate_single]:
            cap.caption([request], settings)
            done += 1
            per = (time.perf_counter() - start) / done
            if b.left() < 1.5 * per:
                break
        single_s = time.perf_counter() - start
    finally:
        del cap
        free_memory()
    out.single_captions, out.single_captions_per_s = done, done / single_s
    out.single_tokens_per_s = tokens[0] / single_s
    out.speedup = out.batched_captions_per_s / out.single_captions_per_s
    print(f"[annotation] one at a time: {done / single_s:.2f} captions/s; batched/single {out.speedup:.2f}x")
