"""Processor inputs for image and video prompts, per row, and how rows are put together for a forward pass.

Each prompt row is encoded once by the model's processor (chat template, then ``images=`` or ``videos=``). Videos
arrive as frames already sampled by ``caprl.data.media``; the processor is told not to resample them and gets
metadata that reproduces their real times (:func:`caprl.captioners.transformers.video_metadata`), so temporal
positions (Qwen2.5-VL) and time markers (Qwen3-VL) are right.

A row keeps its media tensors (``pixel_values`` + ``image_grid_thw``, or ``pixel_values_videos`` +
``video_grid_thw`` [+ ``second_per_grid_ts``]) apart from the others, so TRL can shuffle and split a batch of rows
like any list; :func:`collate_media` concatenates the rows of a micro-batch in row order, which is the order in
which Qwen-VL models consume grids. ``mm_token_type_ids`` (which tokens are image/video placeholders) is what
Qwen-VL models need to build 3-D rope positions; :func:`token_types` lays it out for left-padded prompts followed
by completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from caprl.captioners.transformers import video_metadata
from caprl.data.media import VideoFrames

# Per-media tensors whose first dimension runs over patches or media (never over batch rows).
MEDIA_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


@dataclass
class EncodedPrompt:
    """One prompt row: its token ids, which of them are media placeholders, and its media tensors."""

    input_ids: list[int]
    token_types: list[int] | None
    media: dict[str, torch.Tensor] = field(default_factory=dict)


def user_messages(messages: Sequence[dict[str, Any]], modality: str) -> list[dict[str, Any]]:
    """Text-only chat messages with the media part put first in the last user turn (as CapRL's prompts)."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            text = m["content"] if isinstance(m["content"], str) else _text_of(m["content"])
            m["content"] = [{"type": modality}, {"type": "text", "text": text}]
            return out
    raise ValueError("the prompt has no user message to attach the media to")


def _text_of(parts: Sequence[dict[str, Any]]) -> str:
    return "".join(p.get("text") or "" for p in parts if p.get("type") == "text")


class MediaEncoder:
    """Encodes (messages, media) rows with a VLM processor."""

    def __init__(self, processor: Any):
        self.processor = processor

    def render(self, messages: Sequence[dict[str, Any]], modality: str) -> str:
        return self.processor.apply_chat_template(
            user_messages(messages, modality), add_generation_prompt=True, tokenize=False
        )

    def encode(self, messages: Sequence[dict[str, Any]], media: Image.Image | VideoFrames) -> EncodedPrompt:
        if isinstance(media, VideoFrames):
            out = self.processor(
                text=[self.render(messages, "video")],
                videos=[media.frames],
                video_metadata=[video_metadata(media)],
                do_sample_frames=False,
                return_tensors="pt",
            )
        elif isinstance(media, Image.Image):
            image = media if media.mode == "RGB" else media.convert("RGB")
            out = self.processor(text=[self.render(messages, "image")], images=[image], return_tensors="pt")
        else:
            raise TypeError(f"media must be a PIL image or VideoFrames, got {type(media).__name__}")
        types = out.get("mm_token_type_ids")
        return EncodedPrompt(
            input_ids=out["input_ids"][0].tolist(),
            token_types=None if types is None else types[0].tolist(),
            media={k: out[k] for k in MEDIA_KEYS if k in out},
        )


def collate_media(rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Media tensors of several rows, concatenated in row order (keys absent from a row are skipped for it)."""
    keys = [k for k in MEDIA_KEYS if any(k in r for r in rows)]
    return {k: torch.cat([r[k] for r in rows if k in r], dim=0) for k in keys}


def token_types(
    rows: Sequence[list[int] | None], seq_len: int, completion_len: int, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """``mm_token_type_ids`` for rows laid out as [left-padded prompt | completion]: each row's prompt types end
    right before the completion, padding and completion tokens are 0 (text)."""
    if any(r is None for r in rows):
        return None
    out = torch.zeros((len(rows), seq_len), dtype=torch.long, device=device)
    end = seq_len - completion_len
    for i, r in enumerate(rows):
        assert r is not None
        if len(r) > end:
            raise ValueError(f"row {i}: its prompt has {len(r)} tokens but the batch leaves room for {end}")
        out[i, end - len(r) : end] = torch.tensor(r, dtype=torch.long, device=device)
    return out
