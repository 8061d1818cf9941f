"""Models of the real sizes with random weights, built from their configs on the device: throughput needs the
arithmetic of the real shapes, not their weights (which cannot travel to the GPU machine).

Dimensions are those of the Hub checkpoints' ``config.json`` (Qwen/Qwen2.5-1.5B-Instruct, Qwen/Qwen2.5-7B-Instruct,
Qwen/Qwen2.5-VL-3B-Instruct); the parameter counts they give (1.54 B, 7.62 B, 3.75 B) are checked by
tests/test_gpu_bench.py on the meta device. Token ids come from the locally trained tokenizer that caprl's tiny
models use (``caprl.models.tiny``): text is tokenized with its small vocabulary while the embedding and the LM head
keep the real vocabulary size, so they cost what they cost in the real model. ``tiny`` is caprl's own tiny reader
and captioner, for the CPU test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from caprl.models import tiny

ROPE_THETA = 1_000_000.0

READER_DIMS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
    ),
}  # fmt: skip
"""Reader shapes (Qwen2.5-*-Instruct); ``tiny`` is ``caprl.models.tiny.reader_config``."""

POLICY_TEXT_DIMS: dict[str, Any] = dict(
    hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
    vocab_size=151936,
)  # fmt: skip
POLICY_VISION_DIMS: dict[str, Any] = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
)  # fmt: skip
MROPE_SECTION = [16, 24, 24]  # Qwen2.5-VL's (temporal, height, width) split of head_dim/2 = 64 rotary frequencies
POLICY = "qwen2.5-vl-3b"
TINY = "tiny"


@dataclass(frozen=True)
class Built:
    """A model on its device and what it is."""

    name: str
    model: PreTrainedModel
    params: int


def reader_config(name: str, tokenizer: Any) -> Qwen2Config:
    """The config of reader shape ``name`` (a key of ``READER_DIMS``, or ``tiny``) with the tokenizer's ids."""
    base = tiny.reader_config(tokenizer)  # the special-token ids of the local tokenizer
    if name == TINY:
        return base
    return Qwen2Config(
        **READER_DIMS[name],
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=base.bos_token_id,
        eos_token_id=base.eos_token_id,
        pad_token_id=base.pad_token_id,
    )


def policy_config(name: str, tokenizer: Any) -> Qwen2_5_VLConfig:
    """The config of the policy shape ``name`` (``qwen2.5-vl-3b`` or ``tiny``) with the tokenizer's ids."""
    base = tiny.captioner_config(tokenizer)
    if name == TINY:
        return base
    text = base.text_config
    return Qwen2_5_VLConfig(
        text_config=dict(
            POLICY_TEXT_DIMS,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": MROPE_SECTION},
            bos_token_id=text.bos_token_id,
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
        ),
        vision_config=POLICY_VISION_DIMS,
        image_token_id=base.image_token_id,
        video_token_id=base.video_token_id,
        vision_start_token_id=base.vision_start_token_id,
        vision_end_token_id=base.vision_end_token_id,
        tie_word_embeddings=True,
    )


def build(model_cls: type[PreTrainedModel], config: Any, *, device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """A random-weight model built directly on ``device`` (a 7B model initialised on the CPU first would take
    longer than its whole benchmark); ``device="meta"`` allocates nothing (parameter counts only)."""
    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        model = model_cls._from_config(config, dtype=dtype)
    return model.eval()


def build_reader(name: str, tokenizer: Any, *, device: str, dtype: torch.dtype) -> Built:
    model = build(Qwen2ForCausalLM, reader_config(name, tokenizer), device=device, dtype=dtype)
    model.generation_config = tiny.generation_config(tokenizer)
    return Built(name, model, tiny.n_params(model))


def build_policy(name: str, tokenizer: Any, *, device: str, dtype: torch.dtype) -> Built:
    config = policy_config(name, tokenizer)
    model = build(Qwen2_5_VLForConditionalGeneration, config, device=device, dtype=dtype)
    model.generation_config = tiny.generation_config(tokenizer)
    return Built(name, model, tiny.n_params(model))


def param_counts(tokenizer: Any) -> dict[str, int]:
    """Parameters of every real shape, built on the meta device (nothing allocated)."""
    out = {name: tiny.n_params(build(Qwen2ForCausalLM, reader_config(name, tokenizer), device="meta",
                                     dtype=torch.bfloat16)) for name in READER_DIMS}  # fmt: skip
    vl = build(
        Qwen2_5_VLForConditionalGeneration, policy_config(POLICY, tokenizer), device="meta", dtype=torch.bfloat16
    )
    out[POLICY] = tiny.n_params(vl)
    return out
