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
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as checked_dataclass

from caprl.data.media import VideoFrames


class CaptionerError(RuntimeError):
    """A captioner call that failed (bad media for the model, a server error after retries, ...)."""


# Checked when made (a pydantic dataclass): before a resumable job records the settings in its run.json.
@checked_dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class GenerationSettings:
    """Decoding settings shared by every backend; ``n`` samples per request (Prism uses 4 at temperature 1)."""

    max_new_tokens: int = Field(default=512, ge=1)
    """Longest reply in tokens."""
    temperature: float = Field(default=0.0, ge=0)
    """Sampling temperature (0: greedy, reproducible; CapRL samples at 1.0)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    n: int = Field(default=1, ge=1)
    """Texts written per request (captions per item when annotating)."""
    seed: int | None = None
    """Sampling seed (per item, so a resumed run makes the same replies)."""


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
