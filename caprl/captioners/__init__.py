"""Captioners: vision-language models that write text from media + a prompt (see :mod:`caprl.captioners.base`).

>>> captioner = load_captioner("Qwen/Qwen2.5-VL-3B-Instruct")           # doctest: +SKIP  (transformers, batched)
>>> captioner = load_captioner("http://gpu-box:8000/v1", model="served")  # doctest: +SKIP  (OpenAI-compatible)
"""

from __future__ import annotations

from typing import Any

from caprl.backends import BACKENDS, ModelSpec
from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings


def load_captioner(spec: str | ModelSpec, *, backend: str | None = None, **kwargs: Any) -> Captioner:
    """A captioner for ``spec``: ``transformers`` (batched, in process), ``openai`` (a server URL; requests run
    concurrently up to ``max_concurrency``) or ``vllm`` (in process; needs ``pip install 'caprl[vllm]'``).
    Without ``backend``, a ``http(s)://`` spec is a server and anything else a model id or directory; a
    ``ModelSpec`` carries its backend and options, ``kwargs`` add more.
    """
    if not isinstance(spec, ModelSpec):
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown captioner backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        spec = ModelSpec.parse(spec, backend=backend)
    kwargs = {**spec.loader_kwargs(), **kwargs}
    if spec.backend == "transformers":
        from caprl.preflight import check_model

        check_model(spec.location, role="captioner", flag="captioner")  # one line, not a hub lookup
        from caprl.captioners.transformers import TransformersCaptioner

        return TransformersCaptioner(spec.location, **kwargs)
    if spec.backend == "openai":
        from caprl.captioners.openai import OpenAICaptioner

        return OpenAICaptioner(spec.location, **kwargs)
    from caprl.captioners.vllm import VLLMCaptioner

    return VLLMCaptioner(spec.location, **kwargs)


__all__ = [
    "BACKENDS",
    "CaptionRequest",
    "Captioner",
    "CaptionerError",
    "GenerationSettings",
    "ModelSpec",
    "load_captioner",
]
