"""A captioner behind an OpenAI-compatible HTTP server (vLLM, SGLang, transformers serve, hosted APIs).

Each request becomes one ``/v1/chat/completions`` call: an optional system message, then one user message with
the media parts followed by the prompt text.

Images
    ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` — PNG by default (lossless:
    small text in charts and infographics survives); ``image_format="jpeg"`` for smaller requests.
Videos
    ``video_mode="frames"`` (default): the frames we sampled (``caprl.data.media``) are sent as a list of image
    parts, each preceded by its timestamp as text (``"[00:03]"``) so the model can write timestamped captions.
    This works with every server that accepts several images per message and keeps our frame sampling exactly;
    the price is that the model sees a photo album, not a video (no temporal patch merging, more tokens).
    ``video_mode="video_url"``: the frames are encoded into a small MP4 (PyAV, MPEG-4 part 2) and sent as
    ``{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}`` — a vLLM / transformers-serve
    extension. The server decodes and re-samples that clip with its own settings (vLLM: ``--media-io-kwargs``,
    ``num_frames``), so what the model sees depends on the server.

``n`` samples per request are asked for with the ``n`` field; servers that ignore it (transformers serve answers
one choice) are topped up with further requests, each with its own seed (``seed + k``) when a seed is set.

>>> cap = OpenAICaptioner("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-VL-3B-Instruct")   # doctest: +SKIP
>>> cap.caption([CaptionRequest(image, "Describe this image.")], GenerationSettings(n=4))   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from caprl.captioners.base import CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames
from caprl.http import APIError, AsyncAPI, RetryPolicy, gather_or_cancel
from caprl.readers.openai import resolve_api_key

ImageFormat = Literal["png", "jpeg"]
VideoMode = Literal["frames", "video_url"]


def image_data_url(image: Image.Image, fmt: ImageFormat = "png", *, jpeg_quality: int = 90) -> str:
    """``data:image/...;base64,...`` for a PIL image (converted to RGB)."""
    buf = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if fmt == "png":
        rgb.save(buf, format="PNG", optimize=False)
        mime = "image/png"
    elif fmt == "jpeg":
        rgb.save(buf, format="JPEG", quality=jpeg_quality)
        mime = "image/jpeg"
    else:
        raise ValueError(f"image_format must be png or jpeg, got {fmt!r}")
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def timestamp_label(seconds: float) -> str:
    """``[mm:ss]`` (minutes may exceed 59 for long videos)."""
    total = max(0, int(round(seconds)))
    return f"[{total // 60:02d}:{total % 60:02d}]"


def encode_mp4(video: VideoFrames) -> bytes:
    """The frames as a small MP4 (MPEG-4 part 2, yuv420p), at the frame rate their timestamps imply."""
    import av  # only video_url mode needs an encoder

    frames = video.frames
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2  # yuv420p wants even sides
    if video.duration and video.duration > 0:
        fps = len(frames) / video.duration
    elif len(video.timestamps) > 1 and video.timestamps[-1] > video.timestamps[0]:
        fps = (len(frames) - 1) / (video.timestamps[-1] - video.timestamps[0])
    else:
        fps = 1.0
    rate = max(1, int(round(fps)))
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "3"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr[:h, :w]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


class OpenAICaptioner:
    """Captioner protocol over an OpenAI-compatible server. See the module docstring for the message layout.

    ``model``: the served model's name (None: the first one ``/v1/models`` lists, or none sent when that fails).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 300.0,
        max_retries: int = 4,
        image_format: ImageFormat = "png",
        jpeg_quality: int = 90,
        video_mode: VideoMode = "frames",
        frame_timestamps: bool = True,
        backoff_base: float = 0.5,
        extra_body: dict[str, Any] | None = None,
    ):
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be png or jpeg, got {image_format!r}")
        if video_mode not in ("frames", "video_url"):
            raise ValueError(f"video_mode must be frames or video_url, got {video_mode!r}")
        self.api = AsyncAPI(
            base_url,
            RetryPolicy(max_retries=max_retries, timeout=timeout, backoff_base=backoff_base),
            api_key=resolve_api_key(api_key),
            max_concurrency=max_concurrency,
        )
        self.model = model
        self.name = f"openai:{model or base_url}"
        self.image_format: ImageFormat = image_format
        self.jpeg_quality = jpeg_quality
        self.video_mode: VideoMode = video_mode
        self.frame_timestamps = frame_timestamps
        self.extra_body = dict(extra_body or {})
        self._model_resolved = model is not None
        self.requests_sent = 0

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> OpenAICaptioner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- protocol -----

    def caption(
        self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None
    ) -> list[list[str]]:
        return self.api.run(self._caption(list(requests), settings or GenerationSettings()))

    async def acaption(
        self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None
    ) -> list[list[str]]:
        return await self.api.submit(self._caption(list(requests), settings or GenerationSettings()))

    # ----- messages -----

    def media_parts(self, media: Image.Image | VideoFrames) -> list[dict[str, Any]]:
        if isinstance(media, VideoFrames):
            if self.video_mode == "video_url":
                url = "data:video/mp4;base64," + base64.b64encode(encode_mp4(media)).decode("ascii")
                return [{"type": "video_url", "video_url": {"url": url}}]
            parts: list[dict[str, Any]] = []
            for t, img in zip(media.timestamps, media.to_pil(), strict=True):
                if self.frame_timestamps:
                    parts.append({"type": "text", "text": timestamp_label(t)})
                parts.append(self._image_part(img))
            return parts
        if isinstance(media, Image.Image):
            return [self._image_part(media)]
        raise CaptionerError(f"unsupported media type {type(media).__name__}")

    def _image_part(self, image: Image.Image) -> dict[str, Any]:
        url = image_data_url(image, self.image_format, jpeg_quality=self.jpeg_quality)
        return {"type": "image_url", "image_url": {"url": url}}

    def messages(self, request: CaptionRequest) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        if request.system is not None:
            msgs.append({"role": "system", "content": request.system})
        content = [*self.media_parts(request.media), {"type": "text", "text": request.prompt}]
        msgs.append({"role": "user", "content": content})
        return msgs

    # ----- requests -----

    async def _resolve_model(self) -> None:
        if not self._model_resolved:
            self._model_resolved = True
            if served := await self.api.served_model():
                self.model, self.name = served, f"openai:{served}"

    async def _caption(self, requests: list[CaptionRequest], settings: GenerationSettings) -> list[list[str]]:
        if not requests:
            return []
        if settings.n < 1:
            raise CaptionerError("GenerationSettings.n must be >= 1")
        await self._resolve_model()
        return await gather_or_cancel([self._one(i, r, settings) for i, r in enumerate(requests)])

    async def _one(self, index: int, request: CaptionRequest, settings: GenerationSettings) -> list[str]:
        label = request.id if request.id is not None else f"#{index}"
        try:
            messages = self.messages(request)
        except (ValueError, OSError) as exc:
            raise CaptionerError(f"captioner {self.name}: request {label}: cannot encode media: {exc}") from None
        texts: list[str] = []
        k = 0
        while len(texts) < settings.n:
            want = settings.n - len(texts)
            seed = None if settings.seed is None else settings.seed + k
            try:
                got = await self._chat(messages, settings, want, seed)
            except APIError as exc:
                raise CaptionerError(f"captioner {self.name}: request {label}: {exc}") from None
            if not got:
                raise CaptionerError(f"captioner {self.name}: request {label}: the server answered no choices")
            texts.extend(got[:want])
            k += 1
        return texts

    async def _chat(self, messages: list[dict[str, Any]], settings: GenerationSettings, n: int, seed: int | None):
        payload: dict[str, Any] = {
            "messages": messages,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
        }
        if self.model is not None:
            payload["model"] = self.model
        if settings.top_p != 1.0:
            payload["top_p"] = settings.top_p
        if n > 1:
            payload["n"] = n
        if seed is not None:
            payload["seed"] = seed
        payload.update(self.extra_body)
        self.requests_sent += 1
        body = await self.api.post_json("/chat/completions", payload)
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        return [(c.get("message") or {}).get("content") or "" for c in choices]
