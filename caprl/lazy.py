"""A model that loads on first use, so a rerun with nothing left to do never loads it.

Resumable jobs need the model's *name* up front (to check the output folder was made by the same model) but the
model itself only for the items still to do. ``Deferred`` knows the name and builds the model the first time
anything else is asked of it.

>>> captioner = Deferred(spec.name, spec.build)      # doctest: +SKIP
>>> captioner.name                                   # doctest: +SKIP  (nothing loaded)
>>> captioner.caption(requests, settings)            # doctest: +SKIP  (loads, then captions)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Deferred:
    """Stands in for the model ``build()`` returns: ``name`` without loading; any other attribute loads it."""

    def __init__(self, name: str, build: Callable[[], Any]) -> None:
        self.name = name
        self._build = build
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> Any:
        if self._model is None:
            self._model = self._build()
        return self._model

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes the proxy lacks. Private and dunder names are never the model's business
        # (copy, pickle and protocol checks probe them), and must not trigger a load.
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.get(), attr)

