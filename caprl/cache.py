"""Where caprl keeps what it downloads or converts once: ``$CAPRL_CACHE``, else ``~/.cache/caprl``."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CAPRL_CACHE"


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "caprl")
