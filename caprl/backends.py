"""A model as a user names it (``ModelSpec``) and which backend serves it: the one rule every loader and command
asks. A named backend wins, else a server URL (``http(s)://``) is ``openai`` and anything else (a catalog name,
``.gguf`` file, folder or hub id) ``transformers``.

>>> backend_of("http://127.0.0.1:8000/v1"), backend_of("models/tiny/reader"), backend_of("Qwen/Qwen2.5-3B", "vllm")
('openai', 'transformers', 'vllm')
>>> ModelSpec.parse("http://gpu-box:8000/v1", model="reader").loader_kwargs()
{'model': 'reader'}
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

BackendName = Literal["transformers", "openai", "vllm"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
LOCAL_BACKENDS = ("transformers", "vllm")
"""Backends that load weights in this process: a catalog name or ``.gguf`` file is resolved to a folder, and the
folder checked, before they load. The others (a server) are checked when first called."""


def is_url(spec: str) -> bool:
    """Whether ``spec`` names an OpenAI-compatible server rather than a model."""
    return str(spec).startswith(("http://", "https://"))


def backend_of(spec: str, backend: str | None = None) -> str:
    """``backend`` if given, else ``openai`` for a server URL and ``transformers`` for anything else."""
    return backend or ("openai" if is_url(spec) else "transformers")


class ModelSpec(BaseModel):
    """A reader, captioner or judge as given on the command line or in a config, parsed once: where it is, which
    backend serves it, and that backend's options. ``load_reader`` and ``load_captioner`` take it (or a plain
    string, parsed with no options)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    location: str
    """A catalog name, ``.gguf`` file, folder or hub id, or an OpenAI-compatible server's URL."""
    backend: BackendName
    """The backend that serves it (default: openai for a URL, else transformers)."""
    served_model: str | None = None
    """The model name to request from an OpenAI-compatible server (default: the first one it lists)."""
    device: str | None = None
    """The device of an in-process transformers model (cuda, cuda:1, cpu; default: the best there is)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments of the backend's constructor (``batch_size``, ``max_concurrency``, ...)."""

    @classmethod
    def parse(
        cls,
        location: str,
        *,
        backend: str | None = None,
        model: str | None = None,
        device: str | None = None,
        **options: Any,
    ) -> ModelSpec:
        """``model`` names the model on a server, so it needs the ``openai`` backend (``ValueError`` otherwise);
        ``device`` applies to the ``transformers`` backend only and is dropped for the others (a server or vLLM
        places the model itself)."""
        resolved = backend_of(str(location), backend)
        if model and resolved != "openai":
            raise ValueError(f"a served model name ({model!r}) is for an OpenAI-compatible server (a URL)")
        return cls(
            location=str(location),
            backend=resolved,  # type: ignore[arg-type]  (an unknown name fails validation here)
            served_model=model or None,
            device=device if resolved == "transformers" else None,
            options=options,
        )

    @classmethod
    def of(cls, spec: str | ModelSpec, *, backend: str | None = None) -> ModelSpec:
        """``spec`` as a ``ModelSpec``: a string is parsed; a spec is kept, and a ``backend`` that is not its own
        is a ``ValueError`` (never silently ignored)."""
        if not isinstance(spec, ModelSpec):
            return cls.parse(spec, backend=backend)
        if backend is not None and backend != spec.backend:
            raise ValueError(f"backend {backend!r} given for a ModelSpec of backend {spec.backend!r}")
        return spec

    @property
    def name(self) -> str:
        """The name the loaded model reports (``backend:model``), known without loading it."""
        return f"{self.backend}:{self.served_model or self.location}"

    def loader_kwargs(self) -> dict[str, Any]:
        """The keyword arguments this spec gives its backend's constructor."""
        return {
            **({"model": self.served_model} if self.served_model else {}),
            **({"device": self.device} if self.device else {}),
            **self.options,
        }


def backend_class(table: Mapping[str, str], backend: str, what: str) -> Any:
    """The class ``table`` names for ``backend`` (``"module:Class"``), imported now: the readers' and captioners'
    tables of which class serves which backend. A backend the table has no line for is a ``ValueError``."""
    if backend not in table:
        raise ValueError(f"backend {backend!r} serves no {what}s (those that do: {', '.join(table)})")
    module, _, name = table[backend].partition(":")
    return getattr(importlib.import_module(module), name)
