"""A captioner running in-process on a vLLM engine (``vllm.LLM``), for Prism captioning and bulk annotation.

Targets vLLM's offline multimodal API as of 0.32/0.33: ``LLM.generate`` with prompts of the form
``{"prompt": text, "multi_modal_data": {"image": [PIL images]} | {"video": [(frames, metadata)]}}``.

* The prompt text is the model's chat template applied (by the tokenizer vLLM loaded) to messages whose user turn
  holds ``{"type": "image"}`` / ``{"type": "video"}`` placeholders and the instruction; vLLM's multimodal processor
  expands each placeholder to the right number of vision tokens. No special tokens are written here.
* Videos are the frames we sampled (``caprl.data.media.VideoFrames``, a ``(T, H, W, 3)`` uint8 array), passed with
  HF-style video metadata (``fps``, ``frames_indices``, ``total_num_frames``, ``duration``,
  ``do_sample_frames=False``) so that models that place frames in time (Qwen2.5-VL's absolute time ids,
  Qwen3-VL's timestamps) see the real times and vLLM does not re-sample. ``send_video_metadata=False`` sends bare frames
  for models whose vLLM parser does not take metadata.
* ``n`` samples per request come from ``SamplingParams(n=...)``; ``seed`` seeds each request's sampler.

Importing this module never needs vLLM; constructing a ``VLLMCaptioner`` without it raises ``CaptionerError``
telling how to install it (``pip install 'caprl[vllm]'``).

>>> cap = VLLMCaptioner("Qwen/Qwen2.5-VL-3B-Instruct", limit_mm_per_prompt={"image": 1, "video": 1})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from caprl.captioners.base import CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames

INSTALL_HINT = "vLLM is not installed: pip install 'caprl[vllm]' (needs a CUDA GPU, or vLLM's CPU build)"


def video_metadata(video: VideoFrames) -> dict[str, Any]:
    """HF ``VideoMetadata`` fields that place each sampled frame at its real time."""
    fps = video.native_fps
    if not fps or fps <= 0:
        span = video.timestamps[-1] - video.timestamps[0] if len(video) > 1 else 0.0
        fps = (len(video) - 1) / span if span > 0 else 1.0
    duration = video.duration if video.duration > 0 else (video.timestamps[-1] + 1.0 / fps if len(video) else 0.0)
    indices = [int(round(t * fps)) for t in video.timestamps]
    return {
        "fps": float(fps),
        "duration": float(duration),
        "total_num_frames": max(int(round(duration * fps)), indices[-1] + 1 if indices else 0),
        "frames_indices": indices,
        "video_backend": "caprl",
        "do_sample_frames": False,
    }


class VLLMCaptioner:
    """Captioner protocol on an in-process ``vllm.LLM``.

    ``llm``: an existing ``vllm.LLM`` to share. ``engine_kwargs`` go to ``vllm.LLM`` (``max_model_len``,
    ``limit_mm_per_prompt``, ``mm_processor_kwargs``, ``gpu_memory_utilization``, ...).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        llm: Any = None,
        send_video_metadata: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
        enable_prefix_caching: bool = True,
        **engine_kwargs: Any,
    ):
        try:
            import vllm
        except ImportError as exc:
            raise CaptionerError(f"{INSTALL_HINT} ({exc})") from None
        if llm is None:
            if model is None:
                raise CaptionerError("VLLMCaptioner needs a model (path or hub id) or an existing vllm.LLM")
            llm = vllm.LLM(model=model, enable_prefix_caching=enable_prefix_caching, **engine_kwargs)
        self._vllm = vllm
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.name = f"vllm:{model or 'shared-llm'}"
        self.send_video_metadata = send_video_metadata
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def caption(
        self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None
    ) -> list[list[str]]:
        requests = list(requests)
        if not requests:
            return []
        settings = settings or GenerationSettings()
        params = self._vllm.SamplingParams(
            n=settings.n,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
        )
        prompts = [self.prompt(r) for r in requests]
        # The template already holds every special token it wants (BOS included, for templates that have one).
        outputs = self.llm.generate(prompts, params, use_tqdm=False, tokenization_kwargs={"add_special_tokens": False})
        return [[o.text for o in out.outputs] for out in outputs]

    def prompt(self, request: CaptionRequest) -> dict[str, Any]:
        """The vLLM prompt dict for one request: chat-templated text plus its multimodal data."""
        media = request.media
        if isinstance(media, VideoFrames):
            frames = np.ascontiguousarray(media.frames)
            item: Any = (frames, video_metadata(media)) if self.send_video_metadata else frames
            part, data = {"type": "video"}, {"video": [item]}
        elif isinstance(media, Image.Image):
            part, data = {"type": "image"}, {"image": [media.convert("RGB")]}
        else:
            raise CaptionerError(f"unsupported media type {type(media).__name__}")
        messages: list[dict[str, Any]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": [part, {"type": "text", "text": request.prompt}]})
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
        )
        return {"prompt": text, "multi_modal_data": data}
