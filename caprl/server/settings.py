"""Limits and batching knobs of the reward service."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from caprl.schema import Modality


class ServerSettings(BaseModel):
    """How the service batches and what it refuses. Defaults suit one GPU reader serving a trainer."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_batch: int = Field(default=64, ge=1)
    """Items per engine call: requests are coalesced up to this many."""
    max_wait_ms: float = Field(default=5.0, ge=0)
    """How long an idle engine waits for more requests to fill a batch. A busy engine never waits: the next
    batch is whatever queued while the last one ran."""
    max_pending: int = Field(default=4096, ge=1)
    """Items admitted and not yet answered (queued or being scored); beyond it requests get 503 + Retry-After."""
    max_request_items: int = Field(default=2048, ge=1)
    max_body_bytes: int = Field(default=64 * 2**20, ge=1024)
    max_caption_chars: int = Field(default=100_000, ge=1)
    max_questions_per_item: int = Field(default=256, ge=1)
    """Bounds both an item's MCQs and ``n_questions``: one request cannot buy unbounded reader work."""
    max_new_tokens: int = Field(default=512, ge=1)
    """Upper bound for a request's ``max_new_tokens`` (generate path)."""
    api_key: SecretStr | None = None
    """When set, every endpoint but /health and the docs needs ``Authorization: Bearer <key>``."""
    load_retry_after_s: int = Field(default=5, ge=1)
    media_root: Path | None = None
    """Directory that judge items' media paths are read from (resolved, symlinks followed); a path that leads
    outside it is refused. None: no paths at all, only images sent inline as base64."""
    judge_max_batch: int = Field(default=8, ge=1)
    """Judge items per judge call (judge requests are coalesced apart from the reader's)."""
    judge_max_pending: int = Field(default=512, ge=1)
    """Judge items admitted and not yet answered; beyond it requests with judge items get 503 + Retry-After."""
    max_judge_frames: int = Field(default=64, ge=1)
    """Most frames the judge sees of one video: the default ``max_frames`` of an item's sampling, and its bound."""
    get_reward_modality: Modality = "image"
    """What ``/get_reward`` prompts describe (CapRL++'s ``--task``): the prompt's wording and, for ``video``, the
    timestamp-format term (``timestamp_weight``) follow it. ``/v1/rewards`` items say their own modality."""

    @field_validator("media_root")
    @classmethod
    def _root_is_a_directory(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        root = Path(v).expanduser().resolve()
        if not root.is_dir():
            raise ValueError(f"media_root {str(v)!r} is not a directory")
        return root

    @model_validator(mode="after")
    def _request_fits(self) -> ServerSettings:
        # A request larger than the in-flight bound could never be admitted: refuse the configuration instead.
        if self.max_request_items > self.max_pending:
            raise ValueError(
                f"max_request_items ({self.max_request_items}) must not exceed max_pending ({self.max_pending})"
            )
        return self
