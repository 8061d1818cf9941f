"""Build a captioner from a command-line spec: a URL is an OpenAI-compatible server, anything else a model id
or directory for transformers (or vLLM when asked for). One loader serves every command:
:func:`caprl.captioners.load_captioner`."""

from __future__ import annotations

from caprl.captioners import BACKENDS as CAPTIONER_BACKENDS
from caprl.captioners import load_captioner

__all__ = ["CAPTIONER_BACKENDS", "load_captioner"]
