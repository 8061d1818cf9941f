"""The HTTP bodies of the reward service, shared by the server (validation, OpenAPI schema) and the client.

Input models are strict (no ``"3"`` for an int, no ``true`` for a gold index): a trainer that sends the wrong type
has a bug, and guessing hides it. MCQs accept the forms our importers accept (bare or labelled options; the gold
answer as an index, a letter or the option text), so verl ground truths can be sent as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model
from pydantic.fields import FieldInfo

from caprl.reward.engine import RewardConfig, RewardResult
from caprl.schema import MAX_OPTIONS

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


class ItemInput(BaseModel):
    """One caption and the MCQs of the item it describes."""

    model_config = _STRICT

    caption: str
    mcqs: list[MCQInput] = Field(min_length=1)
    modality: Literal["image", "video"] = "image"
    id: str | None = None
    caption_tokens: int | None = Field(default=None, ge=0)
    """Caption length in policy tokens, for the length term (else the server counts, if it can)."""


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

    items: list[ItemInput]
    options: RewardOptions | None = None  # type: ignore[valid-type]
    include_questions: bool = True
    """False drops the per-question parts from the answer (smaller bodies for trainers that want only rewards)."""


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


class RewardsResponse(BaseModel):
    """Every item scored: one result per item, in request order."""

    results: list[RewardResult]


class ErrorResponse(BaseModel):
    """A request that was refused, or whose items were not all scored.

    ``results`` holds the rewards of the items that were scored (null where ``errors`` says why not), so a bad
    item never costs the others their rewards.
    """

    detail: str
    errors: list[ItemError] = Field(default_factory=list)
    results: list[RewardResult | None] | None = None


# The CapRL reference body: [caption, [[question_with_options, gold_letter], ...]] per prompt.
CapRLPrompt = tuple[str, list[tuple[str, str]]]


class GetRewardRequest(BaseModel):
    """``POST /get_reward``, the CapRL reference body: ``{"prompts": [[caption, [[question_with_options,
    gold_letter], ...]], ...]}``. Options are read out of the question text (``A) x`` / ``A. x`` / ``(A) x``)."""

    model_config = _STRICT

    prompts: list[CapRLPrompt]


class GetRewardResponse(BaseModel):
    rewards: list[float]


class GetRewardErrorResponse(BaseModel):
    """Like ``ErrorResponse``; ``rewards`` is null where an error says why (never a made-up 0.0)."""

    detail: str
    errors: list[ItemError] = Field(default_factory=list)
    rewards: list[float | None] | None = None


class HealthResponse(BaseModel):
    """``GET /health``: 200 only when the reader is loaded and the service takes work."""

    model_config = _OUT

    status: Literal["loading", "ready", "failed", "draining"]
    detail: str | None = None
    reader: str | None = None
    config: RewardConfig | None = None
    pending_items: int = 0
