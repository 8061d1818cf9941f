"""The captions the readers read: shapes-world sentences strung together to a length drawn from a token range, each
with 8 of the world's MCQs. With random-weight readers only the lengths matter (tokens computed), so a caption is
made to a target length in the reader's own tokens, and no two captions of a run are the same (identical captions
in one batch would share their whole prefix in the reader's prefix tree, which real captions do not)."""

from __future__ import annotations

import random
from typing import Any

from caprl.reward.engine import RewardItem
from caprl.schema import MCQ
from caprl.synth import make_captions, make_image_scene, make_mcqs

POOL_SCENES = 64


def _pool(seed: int) -> tuple[list[str], list[MCQ]]:
    """Sentences of exhaustive captions and MCQs of ``POOL_SCENES`` scenes (no rendering: scene graphs only)."""
    sentences: list[str] = []
    mcqs: list[MCQ] = []
    for i in range(POOL_SCENES):
        scene = make_image_scene(seed * 10_000 + i)
        text = make_captions(scene)["exhaustive"]
        sentences += [s.strip() + "." for s in text.split(".") if s.strip()]
        mcqs += make_mcqs(scene)[0]
    return sentences, mcqs


def make_items(
    n: int, tokenizer: Any, *, tokens: tuple[int, int], questions: int = 8, seed: int = 0
) -> list[RewardItem]:
    """``n`` distinct captions whose lengths (in ``tokenizer``'s tokens) are drawn uniformly from ``tokens``, each
    with ``questions`` MCQs."""
    sentences, mcqs = _pool(seed)
    lengths = [len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]]
    rng = random.Random(seed)
    items: list[RewardItem] = []
    seen: set[str] = set()
    while len(items) < n:
        target = rng.randint(*tokens)
        parts: list[str] = []
        count = 0
        while count < target:
            k = rng.randrange(len(sentences))
            parts.append(sentences[k])
            count += lengths[k]
        caption = " ".join(parts)
        if caption in seen:
            continue
        seen.add(caption)
        items.append(RewardItem(caption=caption, mcqs=rng.sample(mcqs, questions), id=f"cap{len(items)}"))
    return items


def caption_tokens(items: list[RewardItem], tokenizer: Any) -> list[int]:
    return [len(ids) for ids in tokenizer([it.caption for it in items], add_special_tokens=False)["input_ids"]]
