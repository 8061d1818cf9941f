"""Tiny Qwen2.5-VL captioner and Qwen2 reader, built from configs alone (seeded random init, local tokenizer).

They are saved exactly like real Qwen checkpoints, so every loader in the project opens them the way it opens
``Qwen/Qwen2.5-VL-3B-Instruct`` / ``Qwen/Qwen2.5-3B-Instruct``: ``AutoProcessor`` +
``AutoModelForImageTextToText`` for the captioner, ``AutoTokenizer`` + ``AutoModelForCausalLM`` for the reader.

>>> models = build_tiny_models("runs/tiny", seed=0)   # doctest: +SKIP
>>> models.captioner, models.reader                    # doctest: +SKIP
(PosixPath('runs/tiny/captioner'), PosixPath('runs/tiny/reader'))
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from caprl.models.chat_template import CHAT_TEMPLATE
from caprl.models.tokenizer import train_tokenizer

MANIFEST_NAME = "tiny_models.json"

# Text tower of both models: 4 layers, hidden 192, grouped-query attention with 6/2 heads of dim 32.
TEXT_DIMS: dict[str, Any] = dict(
    hidden_size=192,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=8192,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
)
ROPE_THETA = 1_000_000.0
# Qwen2.5-VL splits head_dim/2 rotary frequencies into (temporal, height, width) as 16/24/24 of 64;
# the same proportions for head_dim 32.
MROPE_SECTION = [4, 6, 6]

# Vision tower: Qwen2.5-VL's patching (14 px, 2x2 merge, 2-frame tubelets) at a tiny width and depth. As in the
# real model (32 blocks, full attention every 8th), windowed blocks alternate with full-attention ones; the window is
# 112 px, i.e. 4x4 merged tokens, so a 224 px image has 4 windows.
VISION_DIMS: dict[str, Any] = dict(
    depth=4,
    hidden_size=64,
    intermediate_size=128,
    num_heads=4,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[1, 3],
    tokens_per_second=2,
)

# Pixel budgets (factor 28 = patch 14 x merge 2): a 224x224 image stays 224x224 -> 256 patches -> 64 tokens;
# video frames of 112-168 px stay as they are (16-36 tokens per 2 frames); anything bigger is scaled down.
IMAGE_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
VIDEO_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 168 * 168}


@dataclass(frozen=True)
class CaptionerVision:
    """How the tiny captioner sees: the largest image side in pixels and the pixel normalisation.

    ``SHAPES_VISION`` is the demo's: 84 px (the shapes world's 3x3 grid becomes exactly 3x3 visual tokens, one per
    cell) and white mapped to 0, so the background adds nothing and a shape is the whole signal of its token.
    Measured on 1-object images (lr 1e-3, batch 32): with the default (224 px, CLIP normalisation) visual tokens
    differ by ~2% of their norm and held-out colour accuracy stayed at the majority level for 800 steps; with
    these settings it reached 95% by step 800.
    """

    max_side: int = 224
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None


SHAPES_VISION = CaptionerVision(max_side=84, image_mean=(1.0, 1.0, 1.0), image_std=(0.5, 0.5, 0.5))


@dataclass(frozen=True)
class TinyModels:
    """Where :func:`build_tiny_models` put things."""

    root: Path
    captioner: Path
    reader: Path
    manifest: Path


def _padded_vocab(n_tokens: int, multiple: int = 64) -> int:
    # Like real Qwen checkpoints (151936 rows for 151665 tokens), the embedding is padded past the tokenizer;
    # this keeps code honest about len(tokenizer) != config.vocab_size.
    return -(-n_tokens // multiple) * multiple


def _token_ids(tokenizer: Qwen2Tokenizer) -> dict[str, int]:
    names = {
        "endoftext": "<|endoftext|>",
        "im_end": "<|im_end|>",
        "vision_start": "<|vision_start|>",
        "vision_end": "<|vision_end|>",
        "image": "<|image_pad|>",
        "video": "<|video_pad|>",
    }
    return {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in names.items()}


def captioner_config(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLConfig:
    """Tiny Qwen2.5-VL config whose special token ids come from ``tokenizer``."""
    ids = _token_ids(tokenizer)
    text = dict(
        TEXT_DIMS,
        vocab_size=_padded_vocab(len(tokenizer)),
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": MROPE_SECTION},
        bos_token_id=ids["endoftext"],
        eos_token_id=ids["im_end"],
        pad_token_id=ids["endoftext"],
    )
    vision = dict(VISION_DIMS, out_hidden_size=TEXT_DIMS["hidden_size"])
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["image"],
        video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=True,  # as Qwen2.5-VL-3B
    )


def reader_config(tokenizer: Qwen2Tokenizer) -> Qwen2Config:
    """Tiny Qwen2 (Qwen2.5-Instruct style) config."""
    ids = _token_ids(tokenizer)
    return Qwen2Config(
        **TEXT_DIMS,
        vocab_size=_padded_vocab(len(tokenizer)),
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=ids["endoftext"],
        eos_token_id=ids["im_end"],
        pad_token_id=ids["endoftext"],
        tie_word_embeddings=True,
    )


def generation_config(tokenizer: Qwen2Tokenizer) -> GenerationConfig:
    """Stop on ``<|im_end|>`` (end of the assistant turn) or ``<|endoftext|>``; pad with ``<|endoftext|>``."""
    ids = _token_ids(tokenizer)
    return GenerationConfig(
        bos_token_id=ids["endoftext"], eos_token_id=[ids["im_end"], ids["endoftext"]], pad_token_id=ids["endoftext"]
    )


def captioner_processor(tokenizer: Qwen2Tokenizer, vision: CaptionerVision | None = None) -> Qwen2_5_VLProcessor:
    """Processor with pixel budgets for 224 px images (or ``vision.max_side``) and 112-168 px video frames."""
    vision = vision or CaptionerVision()
    grid = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    norm = {}
    if vision.image_mean is not None:
        norm = dict(image_mean=list(vision.image_mean), image_std=list(vision.image_std or (1.0, 1.0, 1.0)))
    size = {"shortest_edge": IMAGE_SIZE["shortest_edge"], "longest_edge": vision.max_side**2}
    images = Qwen2VLImageProcessor(size=size, **grid, **norm)
    # Frames arrive already sampled (caprl.data.media), so the processor keeps them all; the per-frame pixel cap
    # is the reference (qwen-vl-utils) behaviour and silences transformers' warning about it.
    videos = Qwen2VLVideoProcessor(size=dict(VIDEO_SIZE), do_sample_frames=False, cap_pixels_per_frame=True, **grid)
    return Qwen2_5_VLProcessor(
        image_processor=images, tokenizer=tokenizer, video_processor=videos, chat_template=CHAT_TEMPLATE
    )


def _init(model_cls: type[PreTrainedModel], config: Any, seed: int) -> PreTrainedModel:
    # A private RNG stream: the same seed gives the same weights, and the caller's global RNG is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def n_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def build_tiny_models(
    out_dir: str | Path,
    *,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 2048,
    vision: CaptionerVision | None = None,
) -> TinyModels:
    """Build and save the tiny captioner and reader under ``out_dir/captioner`` and ``out_dir/reader``.

    ``seed`` fixes the weights; the tokenizer depends only on ``corpus`` (default: shapes-world text), so models
    built with different seeds share token ids. ``vision`` sets the captioner's image size and normalisation.
    """
    root = Path(out_dir)
    captioner_dir, reader_dir = root / "captioner", root / "reader"
    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size)
    gen = generation_config(tokenizer)

    captioner = _init(Qwen2_5_VLForConditionalGeneration, captioner_config(tokenizer), seed)
    captioner.generation_config = gen
    captioner.save_pretrained(captioner_dir)
    captioner_processor(tokenizer, vision).save_pretrained(captioner_dir)

    reader = _init(Qwen2ForCausalLM, reader_config(tokenizer), seed)
    reader.generation_config = gen
    reader.save_pretrained(reader_dir)
    # Saving the captioner's processor stamped processor_class onto this shared tokenizer; a text-only reader
    # that claims a VL processor cannot be opened with AutoProcessor (e.g. by `transformers serve`).
    tokenizer._processor_class = None  # no public setter for clearing it in transformers 5.x
    tokenizer.save_pretrained(reader_dir)

    manifest = root / MANIFEST_NAME
    info = {
        "seed": seed,
        "vocab_size": len(tokenizer),
        "embedding_rows": captioner.config.text_config.vocab_size,
        "captioner": {
            "path": "captioner",
            "architecture": type(captioner).__name__,
            "params": n_params(captioner),
            "vision_params": n_params(captioner.model.visual),
        },
        "reader": {"path": "reader", "architecture": type(reader).__name__, "params": n_params(reader)},
    }
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    return TinyModels(root=root, captioner=captioner_dir, reader=reader_dir, manifest=manifest)
