"""Build a captioner from a command-line spec: a URL is an OpenAI-compatible server, anything else a model id
or directory for transformers (or vLLM when asked for)."""

from __future__ import annotations

from typing import Any

from caprl.captioners.base import Captioner

CAPTIONER_BACKENDS = ("transformers", "openai", "vllm")


def load_captioner(spec: str, *, backend: str | None = None, **kwargs: Any) -> Captioner:
    if backend is None:
        backend = "openai" if spec.startswith(("http://", "https://")) else "transformers"
    if backend == "transformers":
        from caprl.captioners.transformers import TransformersCaptioner

        return TransformersCaptioner(spec, **kwargs)
    if backend == "openai":
        from caprl.captioners.openai import OpenAICaptioner

        return OpenAICaptioner(spec, **kwargs)
    if backend == "vllm":
        from caprl.captioners.vllm import VLLMCaptioner

        return VLLMCaptioner(spec, **kwargs)
    raise ValueError(f"unknown captioner backend {backend!r}: choose one of {', '.join(CAPTIONER_BACKENDS)}")
