"""Which backend serves a model, the one rule every loader and command asks: a named backend wins, else a
server URL (``http(s)://``) is ``openai`` and anything else (a catalog name, ``.gguf`` file, folder or hub id)
``transformers``.

>>> backend_of("http://127.0.0.1:8000/v1"), backend_of("models/tiny/reader"), backend_of("Qwen/Qwen2.5-3B", "vllm")
('openai', 'transformers', 'vllm')
"""

from __future__ import annotations

from typing import Literal, get_args

BackendName = Literal["transformers", "openai", "vllm"]
BACKENDS: tuple[str, ...] = get_args(BackendName)


def is_url(spec: str) -> bool:
    """Whether ``spec`` names an OpenAI-compatible server rather than a model."""
    return str(spec).startswith(("http://", "https://"))


def backend_of(spec: str, backend: str | None = None) -> str:
    """``backend`` if given, else ``openai`` for a server URL and ``transformers`` for anything else."""
    return backend or ("openai" if is_url(spec) else "transformers")
