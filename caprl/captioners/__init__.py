"""Captioners: vision-language models that write text from media + a prompt (see :mod:`caprl.captioners.base`).

>>> captioner = load_captioner("Qwen/Qwen2.5-VL-3B-Instruct")           # doctest: +SKIP  (transformers, batched)
>>> captioner = load_captioner("http://gpu-box:8000/v1", model="served")  # doctest: +SKIP  (OpenAI-compatible)
"""

from __future__ import annotations

from typing import Any

from caprl.backends import BACKENDS, ModelSpec, backend_class
from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings

CAPTIONERS: dict[str, str] = {
    "transformers": "caprl.captioners.transformers:TransformersCaptioner",
    "openai": "caprl.captioners.openai:OpenAICaptioner",
    "vllm": "caprl.captioners.vllm:VLLMCaptioner",
}
"""The class that serves each backend, imported when used: a new backend is a module here implementing
``caprl.captioners.base.Captioner``, its name in ``caprl.backends.BackendName`` and a line in this table."""


def load_captioner(spec: str | ModelSpec, *, backend: str | None = None, **kwargs: Any) -> Captioner:
    """A captioner for ``spec``: ``transformers`` (batched, in process), ``openai`` (a server URL; requests run
    concurrently up to ``max_concurrency``) or ``vllm`` (in process; needs ``pip install 'caprl[vllm]'``).
    Without ``backend``, a ``http(s)://`` spec is a server and anything else a model id or directory; a
    ``ModelSpec`` carries its backend and options, ``kwargs`` add more.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown captioner backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    spec = ModelSpec.of(spec, backend=backend)
    kwargs = {**spec.loader_kwargs(), **kwargs}
    if spec.backend == "transformers":
        from caprl.preflight import check_model

        check_model(spec.location, role="captioner", flag="captioner")  # one line, not a hub lookup
    return backend_class(CAPTIONERS, spec.backend, "captioner")(spec.location, **kwargs)


__all__ = [
    "BACKENDS",
    "CaptionRequest",
    "Captioner",
    "CaptionerError",
    "GenerationSettings",
    "ModelSpec",
    "load_captioner",
]
