"""Pick a captioner backend from what the user gives: a server URL, or a model id/directory.

Shared by ``caprl annotate`` and ``caprl qa``: a ``CaptionerSpec`` is plain data, so a Ray actor (or any other
process) can rebuild the same captioner from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from caprl.backends import BACKENDS, backend_of
from caprl.captioners import load_captioner
from caprl.captioners.base import Captioner


class CaptionerSpec(BaseModel):
    """How to build a captioner: ``model`` is a hub id, a local directory or an ``http(s)://`` server URL."""

    model_config = ConfigDict(frozen=True)

    model: str
    backend: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend keyword arguments (``batch_size``, ``device``, ``max_concurrency``, ``model`` for a server, ...)."""

    @property
    def resolved_backend(self) -> str:
        return backend_of(self.model, self.backend)

    @property
    def name(self) -> str:
        """The name the built captioner reports (``backend:model``), known without loading it."""
        backend = self.resolved_backend
        if backend == "openai":
            return f"openai:{self.options.get('model') or self.model}"
        return f"{backend}:{self.model}"

    def build(self) -> Captioner:
        return load_captioner(self.model, backend=self.backend, **self.options)


__all__ = ["BACKENDS", "CaptionerSpec", "load_captioner"]
