"""The reward service's settings: limits and batching (``ServerSettings``), where it listens (``ListenSettings``)
and how its VLM judge answers (``JudgeSettings``). ``caprl reward serve`` derives its flags from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from caprl.flags import Flag
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
    """Items per request; beyond it: 413."""
    max_body_mb: float = Field(default=64.0, ge=1 / 1024)
    """Largest request body in MiB; beyond it: 413."""
    max_caption_chars: int = Field(default=100_000, ge=1)
    """Longest caption in characters; beyond it: 422."""
    max_questions_per_item: int = Field(default=256, ge=1)
    """Bounds both an item's MCQs and ``n_questions``: one request cannot buy unbounded reader work."""
    max_new_tokens_limit: int = Field(default=512, ge=1)
    """Upper bound for a request's ``max_new_tokens`` (generate path)."""
    api_key: SecretStr | None = None
    """When set, every endpoint but /health and the docs needs ``Authorization: Bearer <key>``."""
    load_retry_after_s: int = Field(default=5, ge=1)
    """Retry-After of the 503 answered while the models load."""
    media_root: Path | None = None
    """Directory that judge items' media paths are read from (resolved, symlinks followed); a path that leads
    outside it is refused. None: no paths at all, only images sent inline as base64."""
    judge_max_batch: int = Field(default=8, ge=1)
    """Judge items per judge call (judge requests are coalesced apart from the reader's)."""
    judge_max_pending: int = Field(default=512, ge=1)
    """Judge items admitted and not yet answered; beyond it requests with judge items get 503 + Retry-After."""
    max_judge_frames: int = Field(default=64, ge=1)
    """Most frames the judge sees of one video: the default ``max_frames`` of an item's sampling, and its bound."""
    get_reward_modality: Annotated[Modality, Flag("--modality")] = "image"
    """What ``/get_reward`` prompts describe (CapRL++'s ``--task``): the prompt's wording and, for ``video``, the
    timestamp-format term (``timestamp_weight``) follow it. ``/v1/rewards`` items say their own modality."""

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

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


class ListenSettings(BaseModel):
    """Where the service listens and how it stops."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0: every interface)."""
    port: int = Field(default=18889, ge=1, le=65535)
    """Port (18889 is CapRL++'s reward master, so its scripts work unchanged)."""
    shutdown_timeout: float = Field(default=30.0, ge=0)
    """Seconds in-flight requests get to finish on SIGTERM."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Server log level."""


class JudgeSettings(BaseModel):
    """How the service's VLM judge answers."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    retries: Annotated[int, Flag("--judge-retries")] = Field(default=2, ge=0)
    """Judge retries of an answer without valid scores."""
    max_new_tokens: Annotated[int, Flag("--judge-max-new-tokens")] = Field(default=256, ge=1)
    """Most tokens of one judge answer."""
