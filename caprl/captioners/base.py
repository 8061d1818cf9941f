"""The one captioner protocol: a vision-language model writing text about an image or a video.

Prism evaluation, annotation, QA generation, the with-media leg of the QA filter and the VLM-judge reward all
talk to captioners through this protocol. (Training rollouts come from the trainer's own engine.)

>>> cap = TransformersCaptioner("models/tiny/captioner")                         # doctest: +SKIP
>>> cap.caption([CaptionRequest(media=image, prompt="Describe the image.")])    # doctest: +SKIP
[['A red circle at the top left ...']]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from caprl.data.media import VideoFrames


class CaptionerError(RuntimeError):
    """A captioner call that failed (bad media for the model, a server error after retries, ...)."""


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings shared by every backend; ``n`` samples per request (Prism uses 4 at temperature 1)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        # Checked here, when the settings are made: before a resumable job records them in its run.json.
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={self.n}, max_new_tokens={self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


@dataclass(frozen=True)
class CaptionRequest:
    """Media (a PIL image or sampled ``VideoFrames``) and the text prompt that goes with it."""

    media: Image.Image | VideoFrames
    prompt: str
    id: str | None = None
    system: str | None = None

    @property
    def modality(self) -> str:
        return "video" if isinstance(self.media, VideoFrames) else "image"


@runtime_checkable
class Captioner(Protocol):
    """What every captioner backend provides: ``n`` texts per request, in request order."""

    name: str

    def caption(
        self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None
    ) -> list[list[str]]: ...
