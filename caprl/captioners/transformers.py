"""Captioner backend on Hugging Face transformers: ``AutoProcessor`` + ``AutoModelForImageTextToText``.

Works with any chat VLM whose processor takes ``images=`` / ``videos=`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, ...).

How a call runs:

- Every request becomes ``n`` *rows* (one per sample; at temperature 0 one row, copied ``n`` times). Rows are
  split by modality (image rows, video rows), cut into batches of ``batch_size`` rows, generated with left
  padding, and put back in request order.
- Prompts are the processor's chat template applied to ``[system?, user: [image|video part, text part]]``. No
  special token is written here. Media goes to the processor call, not into the messages.
- Videos arrive as ``VideoFrames`` already sampled (``caprl.data.media``). The processor is told not to resample
  (``do_sample_frames=False``) and gets metadata that reproduces the frames' real times (see
  :func:`video_metadata`), so Qwen2.5-VL's temporal positions and Qwen3-VL's ``<t seconds>`` markers are right.
- Sampling (temperature > 0) is seeded *per row*: sample ``j`` of a request is drawn from its own random stream,
  keyed by ``(settings.seed, request id or, without one, position in the call, j)``; ``seed=None`` takes a fresh
  seed from torch's global RNG. The same seed gives the same texts, whatever the batch
  size and whatever else is in the batch (up to float differences between padded and unpadded batches), so a
  resumed annotation run regenerates the same captions. Temperature and top-p come from ``GenerationSettings``
  only; the checkpoint's own sampling defaults (Qwen ships ``top_k``/``top_p``/``temperature`` in its
  ``generation_config.json``) are not applied. Its ``repetition_penalty``, ``eos_token_id`` and
  ``pad_token_id`` are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from caprl.captioners.base import CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"

# Frame times reach the processor as indices on a virtual 1 kHz clock (see ``video_metadata``).
_CLOCK_HZ = 1000.0
_DEFAULT_FPS = 2.0


def _label(request: CaptionRequest, index: int) -> str:
    return repr(request.id) if request.id is not None else f"#{index} (no id)"


def sampling_fps(frames: VideoFrames) -> float:
    """Frames per second of a sampled clip: the mean rate between its first and last frame."""
    ts = frames.timestamps
    if len(ts) >= 2 and ts[-1] > ts[0]:
        return (len(ts) - 1) / (ts[-1] - ts[0])
    if frames.duration and frames.duration > 0:
        return len(ts) / frames.duration
    return _DEFAULT_FPS


def video_metadata(frames: VideoFrames) -> dict[str, Any]:
    """Processor metadata for pre-sampled frames that reproduces their times.

    Frame ``i`` is given index ``round(1000 * t_i)`` of a virtual video recorded at 1000 fps, and the virtual
    video is made ``T * 1000 / f`` frames long (``f`` = :func:`sampling_fps`). Processors then see

    - ``metadata.sampled_fps = T / total * 1000 = f`` (Qwen2-VL/2.5-VL: seconds per temporal patch), and
    - ``metadata.timestamps = [t_i]`` exactly (Qwen3-VL: the ``<t seconds>`` text before each patch),

    where the plain ``{"total_num_frames": T, "fps": f}`` would make every clip start at 0 s.
    """
    n = len(frames.timestamps)
    fps = sampling_fps(frames)
    indices = [round(t * _CLOCK_HZ) for t in frames.timestamps]
    total = max(round(n * _CLOCK_HZ / fps), indices[-1] + 1, n)
    return {
        "total_num_frames": total,
        "fps": _CLOCK_HZ,
        "frames_indices": indices,
        "duration": frames.duration,
    }


def _check_media(request: CaptionRequest, index: int) -> Image.Image | VideoFrames:
    """Catch media no processor can take, before it fails deep inside one; images become RGB."""
    media = request.media
    who = _label(request, index)
    if isinstance(media, Image.Image):
        if media.width < 1 or media.height < 1:
            raise CaptionerError(f"request {who}: empty image ({media.width}x{media.height})")
        return media if media.mode == "RGB" else media.convert("RGB")
    if isinstance(media, VideoFrames):
        frames = media.frames
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", None)
            raise CaptionerError(f"request {who}: video frames must be a (T, H, W, 3) array, got shape {shape}")
        if frames.dtype != np.uint8:
            raise CaptionerError(f"request {who}: video frames must be uint8 RGB, got {frames.dtype}")
        if frames.shape[0] == 0:
            raise CaptionerError(f"request {who}: video has no frames")
        if len(media.timestamps) != frames.shape[0]:
            raise CaptionerError(f"request {who}: {frames.shape[0]} frames but {len(media.timestamps)} timestamps")
        return media
    raise CaptionerError(f"request {who}: media must be a PIL image or VideoFrames, got {type(media).__name__}")


def _seed_key(request: CaptionRequest, index: int) -> str:
    return f"id:{request.id}" if request.id is not None else f"#{index}"


def row_seed(seed: int, key: str, sample: int) -> int:
    """The random stream of one sample: a stable 63-bit hash of (seed, request key, sample index)."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}\x1f{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _RowSampler:
    """Logits processor that samples each row from its own ``torch.Generator``, then forces that token.

    ``generate`` runs greedy (``do_sample=False``) after it, so the forced token is what it picks. Uniforms are
    drawn on the CPU (one per row per step) and turned into tokens by inverse CDF on the logits' device.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            # Keep the smallest set of most likely tokens whose mass reaches top_p (always at least one).
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
            sorted_probs = sorted_probs.masked_fill(mass_before >= self.top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        cdf = probs.double().cumsum(dim=-1)
        target = (u.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)
        chosen = torch.searchsorted(cdf, target, right=True).squeeze(-1)
        # Float rounding can push the target past the last positive mass: fall back to the most likely token.
        bad = (chosen >= probs.shape[-1]) | (
            probs.gather(-1, chosen.clamp(max=probs.shape[-1] - 1)[:, None])[:, 0] <= 0
        )
        chosen = torch.where(bad, probs.argmax(dim=-1), chosen)
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(-1, chosen[:, None], 0.0)
        return forced


@dataclass
class _Row:
    request: int  # index into the call's requests
    sample: int  # sample index j < n (or -1 for the single greedy row)


def _resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use e.g. 'bfloat16', 'float16', 'float32')")
    return resolved


class TransformersCaptioner:
    """A VLM captioner run in-process with transformers.

    ``model`` is a hub id or a local directory holding a checkpoint and its processor. ``device`` defaults to
    CUDA when available, ``dtype`` to bfloat16 there and float32 on CPU. ``batch_size`` counts rows (sequences
    generated together), not requests: ``n`` samples of one request are ``n`` rows.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 8,
        attn_implementation: str | None = None,
    ):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = str(model)
        self.name = f"transformers:{self.model_id}"
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = _resolve_dtype(dtype, self.device)

        self.processor = AutoProcessor.from_pretrained(self.model_id)
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # generation continues from the last position of every row
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        self.model = AutoModelForImageTextToText.from_pretrained(self.model_id, **kwargs).to(self.device).eval()

        gen = self.model.generation_config
        self._pad_token_id = gen.pad_token_id if gen.pad_token_id is not None else tokenizer.pad_token_id
        if self._pad_token_id is None:
            raise CaptionerError(f"{self.model_id}: neither the generation config nor the tokenizer has a pad token")
        eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
        self._eos_token_id = eos
        self._repetition_penalty = getattr(gen, "repetition_penalty", None)

    # ---- prompts and inputs -------------------------------------------------------------------------------

    def messages(self, request: CaptionRequest) -> list[dict[str, Any]]:
        """The chat messages of a request; the media part carries no data (the processor call gets it)."""
        msgs: list[dict[str, Any]] = []
        if request.system is not None:
            msgs.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
        part = {"type": request.modality}
        msgs.append({"role": "user", "content": [part, {"type": "text", "text": request.prompt}]})
        return msgs

    def render_prompt(self, request: CaptionRequest) -> str:
        """The prompt text the model sees (the media placeholder not yet expanded)."""
        return self.processor.apply_chat_template(self.messages(request), add_generation_prompt=True, tokenize=False)

    def _encode(self, requests: Sequence[CaptionRequest], media: Sequence[Image.Image | VideoFrames]):
        texts = [self.render_prompt(r) for r in requests]
        if isinstance(media[0], VideoFrames):
            return self.processor(
                text=texts,
                videos=[m.frames for m in media],
                video_metadata=[video_metadata(m) for m in media],
                do_sample_frames=False,
                padding=True,
                return_tensors="pt",
            )
        return self.processor(text=texts, images=list(media), padding=True, return_tensors="pt")

    def _encode_or_explain(self, requests: Sequence[CaptionRequest], media: Sequence, labels: Sequence[str]):
        try:
            return self._encode(requests, media)
        except Exception as batch_exc:  # noqa: BLE001 - any processor failure is reported per request below
            # Find which request(s) the processor rejects, so the error names them.
            bad = []
            for req, m, label in zip(requests, media, labels, strict=True):
                try:
                    self._encode([req], [m])
                except Exception as exc:  # noqa: BLE001
                    bad.append(f"request {label}: {type(exc).__name__}: {exc}")
            if bad:
                raise CaptionerError("media rejected by the processor: " + "; ".join(bad)) from batch_exc
            raise CaptionerError(
                f"processor failed on a batch of requests {', '.join(labels)} (each alone is accepted): "
                f"{type(batch_exc).__name__}: {batch_exc}"
            ) from batch_exc

    # ---- generation -----------------------------------------------------------------------------------------

    def _generation_config(self, settings: GenerationSettings):
        from transformers import GenerationConfig

        extra = {}
        if self._repetition_penalty not in (None, 1.0):
            extra["repetition_penalty"] = self._repetition_penalty
        return GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,  # sampling, when asked for, is done by _RowSampler
            num_beams=1,
            # transformers' neutral values, set so the checkpoint's sampling defaults are not merged in (they
            # would be inert under do_sample=False, but warned about on every call).
            temperature=1.0,
            top_k=50,
            top_p=1.0,
            eos_token_id=self._eos_token_id,
            pad_token_id=self._pad_token_id,
            **extra,
        )

    @torch.inference_mode()
    def _generate(self, inputs, settings: GenerationSettings, seeds: Sequence[int] | None) -> list[str]:
        from transformers import LogitsProcessorList

        inputs = inputs.to(self.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.dtype)
        processors = LogitsProcessorList()
        if seeds is not None:
            processors.append(_RowSampler(seeds, settings.temperature, settings.top_p))
        out = self.model.generate(
            **inputs, generation_config=self._generation_config(settings), logits_processor=processors
        )
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]

    def caption(
        self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None
    ) -> list[list[str]]:
        """``settings.n`` texts per request, in request order (only the generated text, stripped)."""
        settings = settings or GenerationSettings()
        if settings.n < 1:
            raise ValueError(f"n must be >= 1, got {settings.n}")
        if settings.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {settings.max_new_tokens}")
        if not 0.0 < settings.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {settings.top_p}")
        requests = list(requests)
        if not requests:
            return []
        media = [_check_media(r, i) for i, r in enumerate(requests)]
        labels = [_label(r, i) for i, r in enumerate(requests)]
        sampling = settings.temperature > 0
        # No seed: a fresh one from torch's global RNG (so torch.manual_seed still makes a run repeatable).
        base_seed = settings.seed if settings.seed is not None else int(torch.randint(0, 2**62, ()).item())

        rows = [_Row(i, j) for i in range(len(requests)) for j in (range(settings.n) if sampling else [-1])]
        texts: dict[tuple[int, int], str] = {}
        for modality in ("image", "video"):
            todo = [row for row in rows if requests[row.request].modality == modality]
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                inputs = self._encode_or_explain(
                    [requests[r.request] for r in chunk],
                    [media[r.request] for r in chunk],
                    [labels[r.request] for r in chunk],
                )
                seeds = None
                if sampling:
                    keys = [_seed_key(requests[r.request], r.request) for r in chunk]
                    seeds = [row_seed(base_seed, key, r.sample) for key, r in zip(keys, chunk, strict=True)]
                for row, text in zip(chunk, self._generate(inputs, settings, seeds), strict=True):
                    texts[(row.request, row.sample)] = text
        if sampling:
            return [[texts[(i, j)] for j in range(settings.n)] for i in range(len(requests))]
        return [[texts[(i, -1)]] * settings.n for i in range(len(requests))]

    def __repr__(self) -> str:
        return (
            f"TransformersCaptioner({self.model_id!r}, device={self.device!r}, dtype={self.dtype}, "
            f"batch_size={self.batch_size})"
        )
