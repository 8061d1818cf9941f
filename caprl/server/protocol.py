"""The HTTP bodies of the reward service, shared by the server (validation, OpenAPI schema) and the client.

Input models are strict (no ``"3"`` for an int, no ``true`` for a gold index): a trainer that sends the wrong type
has a bug, and guessing hides it. MCQs accept the forms our importers accept (bare or labelled options; the gold
answer as an index, a letter or the option text), so verl ground truths can be sent as they are.

Two kinds of item share the bulk endpoint, told apart by their ``mode``: ``"qa"`` (the default; a caption and its
MCQs, scored by the text-only reader, with the media too when its correctness term is verified claim by claim) and
``"judge"`` (a caption and its media, scored by the VLM judge).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model, model_validator
from pydantic.fields import FieldInfo

from caprl.reward.engine import RewardConfig, RewardResult
from caprl.schema import MAX_OPTIONS, Modality

if TYPE_CHECKING:
    from PIL import Image

_STRICT = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)
_OUT = ConfigDict(use_attribute_docstrings=True)


class MCQInput(BaseModel):
    """One multiple-choice question about the item."""

    model_config = _STRICT

    question: str = Field(min_length=1)
    options: list[str] = Field(min_length=2, max_length=MAX_OPTIONS)
    """Bare (``"red"``) or all labelled in order (``"A) red"``, ``"A. red"``, ``"(A) red"``)."""
    gold: StrictInt | StrictStr
    """The gold option: 0-based index, letter (``"C"``, ``"(C)"``) or the option's text."""
    kind: str | None = None


MAX_SAMPLING_FPS = 120.0


class FrameSamplingInput(BaseModel):
    """How frames are taken from a judged video: ``fps`` per second or ``num_frames`` evenly spaced (not both),
    at most ``max_frames`` (default and upper bound: the server's ``--max-judge-frames``). Default: 2 per second,
    as the reference judge."""

    model_config = _STRICT

    fps: float | None = Field(default=None, gt=0, le=MAX_SAMPLING_FPS)
    num_frames: int | None = Field(default=None, gt=0)
    max_frames: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_mode(self) -> FrameSamplingInput:
        if self.fps is not None and self.num_frames is not None:
            raise ValueError("give fps or num_frames, not both")
        return self


class ImageMediaInput(BaseModel):
    """An image for the judge: the encoded file (PNG, JPEG, ...) as base64 in ``data``, or a ``path`` relative to
    the server's ``--media-root``; exactly one of them."""

    model_config = _STRICT

    type: Literal["image"]
    data: str | None = None
    """Base64 of the encoded image file (a ``data:image/...;base64,`` prefix is allowed)."""
    path: str | None = None
    """Relative to the server's ``--media-root``; a path that leads outside it is refused."""

    @model_validator(mode="after")
    def _one_source(self) -> ImageMediaInput:
        if self.data is None and self.path is None:
            raise ValueError("an image needs base64 'data' or a 'path' under the server's media root")
        if self.data is not None and self.path is not None:
            raise ValueError("give the image as base64 'data' or as a 'path', not both")
        return self

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageMediaInput:
        """An image sent inline: ``data`` is the encoded file."""
        return cls(type="image", data=base64.b64encode(data).decode("ascii"))

    @classmethod
    def from_image(cls, image: Image.Image, fmt: str = "PNG") -> ImageMediaInput:
        """A PIL image sent inline, encoded as ``fmt`` (PNG by default: lossless, so the judge sees these pixels)."""
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        return cls.from_bytes(buf.getvalue())


class VideoMediaInput(BaseModel):
    """A video for the judge: a ``path`` relative to the server's ``--media-root``, and how frames are taken."""

    model_config = _STRICT

    type: Literal["video"]
    path: str = Field(min_length=1)
    """Relative to the server's ``--media-root``; a path that leads outside it is refused."""
    sampling: FrameSamplingInput | None = None


class ItemInput(BaseModel):
    """One caption and the MCQs of the item it describes."""

    model_config = _STRICT

    caption: str
    mcqs: list[MCQInput] = Field(min_length=1)
    modality: Modality = "image"
    id: str | None = None
    caption_tokens: int | None = Field(default=None, ge=0)
    """Caption length in policy tokens, for the length term (else the server counts, if it can)."""
    scene: dict[str, Any] | None = None
    """The shapes-world scene graph (``Sample.metadata["scene"]``), for the correctness term (``correctness_weight``)
    on a shapes-world item."""
    media: ImageMediaInput | VideoMediaInput | None = Field(default=None, discriminator="type")
    """The item's image or video, for the correctness term on real media (``correctness_weight`` on, no ``scene``):
    the reader splits the caption into claims and the VLM judge checks them against it (a server started with
    ``--reader`` and ``--judge``). Same form as a judge item's media; only sent while the term is on."""
    mode: Literal["qa"] = "qa"
    """``"qa"``: the MCQ reward (the default). ``"judge"`` items are ``JudgeItemInput``."""


class JudgeItemInput(BaseModel):
    """One caption for the VLM judge and the media it describes (a server started with ``--judge``)."""

    model_config = _STRICT

    mode: Literal["judge"]
    caption: str
    media: ImageMediaInput | VideoMediaInput = Field(discriminator="type")
    id: str | None = None
    modality: Modality | None = None
    """Optional; when given it must match ``media.type``."""

    @classmethod
    def image(cls, caption: str, image: Image.Image | bytes | str | Path, *, id: str | None = None) -> JudgeItemInput:
        """A judge item for an image: a PIL image or encoded bytes (sent inline), or a ``str``/``Path`` relative to
        the server's media root (sent as a path)."""
        if isinstance(image, bytes):
            media = ImageMediaInput.from_bytes(image)
        elif isinstance(image, (str, Path)):
            media = ImageMediaInput(type="image", path=str(image))
        else:
            media = ImageMediaInput.from_image(image)
        return cls(mode="judge", caption=caption, media=media, id=id)

    @classmethod
    def video(
        cls,
        caption: str,
        path: str | Path,
        *,
        sampling: FrameSamplingInput | dict[str, Any] | None = None,
        id: str | None = None,
    ) -> JudgeItemInput:
        """A judge item for a video at ``path`` relative to the server's media root."""
        if isinstance(sampling, dict):
            sampling = FrameSamplingInput.model_validate(sampling)
        media = VideoMediaInput(type="video", path=str(path), sampling=sampling)
        return cls(mode="judge", caption=caption, media=media, id=id)


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    return field.annotation | None, FieldInfo.merge_field_infos(field, default=None)


# Every RewardConfig field, optional: built from the config so the two never drift apart. Validation of the merged
# config is RewardConfig's own; this model documents the fields and rejects unknown ones.
RewardOptions = create_model(  # type: ignore[call-overload]
    "RewardOptions",
    __config__=_STRICT,
    __doc__="Per-request overrides of the server's reward config; fields left out keep the server's value.",
    **{name: _optional(f) for name, f in RewardConfig.model_fields.items()},
)


class RewardsRequest(BaseModel):
    """``POST /v1/rewards``: many captions at once."""

    model_config = _STRICT

    items: list[ItemInput | JudgeItemInput]
    """QA items (``mode`` ``"qa"`` or left out) and judge items (``mode`` ``"judge"``), mixed freely."""
    options: RewardOptions | None = None  # type: ignore[valid-type]
    """Overrides of the QA reward config (the judge is configured on the server)."""
    include_questions: bool = True
    """False drops the per-question parts from the answer (smaller bodies for trainers that want only rewards)."""


class JudgeRewardResult(BaseModel):
    """The VLM judge's verdict on a judge item: the fused score is the reward; its parts are the per-dimension
    scores, the attempts and every raw answer."""

    model_config = _OUT

    mode: Literal["judge"] = "judge"
    id: str | None = None
    reward: float
    """Fused score in [0, 1]: the weighted mean of the dimension scores, over 10."""
    modality: Modality
    scores: dict[str, float]
    """Per dimension, 0-10, higher is better: factuality, temporal_alignment (videos only), coverage,
    hallucination (10 = nothing invented)."""
    attempts: int
    """Judge calls made for this item (retries after unparseable answers included)."""
    raw: list[str]
    """Every answer the judge gave, in order (the last one is the one scored)."""
    rejected: list[str] = Field(default_factory=list)
    """Why each earlier answer was rejected."""


ItemResult = RewardResult | JudgeRewardResult


def result_from_json(data: Any) -> ItemResult:
    """A result of ``POST /v1/rewards`` as its model: ``JudgeRewardResult`` for judge items, else ``RewardResult``."""
    if isinstance(data, dict) and data.get("mode") == "judge":
        return JudgeRewardResult.model_validate(data)
    return RewardResult.model_validate(data)


class ItemError(BaseModel):
    """Why one item got no reward."""

    model_config = _OUT

    index: int | None = None
    """Position of the item in the request (None: the error concerns the whole request)."""
    id: str | None = None
    field: str | None = None
    """Where in the item (``mcqs.0.gold``), or in the body for request-level errors."""
    status: int
    message: str
    raw: list[str] | None = None
    """A judge item the judge failed on: every answer it gave (none had valid scores)."""


class RewardsResponse(BaseModel):
    """Every item scored: one result per item, in request order."""

    results: list[RewardResult | JudgeRewardResult]


class ErrorResponse(BaseModel):
    """A request that was refused, or whose items were not all scored.

    ``results`` holds the rewards of the items that were scored (null where ``errors`` says why not), so a bad
    item never costs the others their rewards.
    """

    detail: str
    errors: list[ItemError] = Field(default_factory=list)
    results: list[RewardResult | JudgeRewardResult | None] | None = None


# The CapRL reference body: [caption, [[question_with_options, gold_letter], ...]] per prompt.
CapRLPrompt = tuple[str, list[tuple[str, str]]]


class JudgeSample(BaseModel):
    """One caption for CapRL++'s VLM judge and its video (under the server's ``--media-root``: relative, or an
    absolute path inside it). Other keys are ignored, as CapRL++ ignores them."""

    model_config = _OUT

    caption: str
    video_path: str = Field(min_length=1)


class GetRewardRequest(BaseModel):
    """``POST /get_reward``, CapRL's bodies. QA (the default): ``{"prompts": [[caption, [[question_with_options,
    gold_letter], ...]], ...]}``, options read out of the question text (``"   - A) x"``, ``A) x``, ``A. x``,
    ``(A) x``, ...). VLM judge (CapRL++): ``{"score_mode": "vl_judge", "samples": [{"caption", "video_path"}]}``.
    ``query`` and ``labels`` are accepted and ignored, as CapRL ignores them."""

    model_config = _OUT

    score_mode: Literal["qa", "vl_judge"] = "qa"
    prompts: list[CapRLPrompt] | None = None
    """QA mode: required."""
    samples: list[JudgeSample] | None = None
    """Judge mode: required (a server started with ``--judge``)."""
    query: list[Any] | None = None
    labels: list[Any] | None = None


class GetRewardResponse(BaseModel):
    """One reward per prompt (or judge sample), in order, plus its parts as CapRL++'s servers answer them."""

    model_config = _OUT

    rewards: list[float]
    qa_rewards: list[float] | None = None
    """QA mode: the mean per-question score of each prompt (the reward before weights and terms)."""
    format_rewards: list[float] | None = None
    """QA mode on a video server with a timestamp weight: the timestamp-format term of each caption."""
    judge_rewards: list[float] | None = None
    """Judge mode: the judge's fused score of each sample."""


class GetRewardErrorResponse(BaseModel):
    """Like ``ErrorResponse``; ``rewards`` is null where an error says why (never a made-up 0.0)."""

    detail: str
    errors: list[ItemError] = Field(default_factory=list)
    rewards: list[float | None] | None = None


class HealthResponse(BaseModel):
    """``GET /health``: 200 only when every model the server was started with (the reader, the judge) is loaded
    and the service takes work."""

    model_config = _OUT

    status: Literal["loading", "ready", "failed", "draining"]
    detail: str | None = None
    reader: str | None = None
    judge: str | None = None
    config: RewardConfig | None = None
    pending_items: int = 0
