"""Folders that appear whole or not at all: build in a staging folder beside the target, then rename.

A killed build leaves only a ``.NAME.partial-*`` folder, which never passes for a finished one (a finished
folder holds its manifest, written last) and is removed by the next build under the same lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "caprl-model.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when the folder or manifest is missing or unreadable."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """An exclusive lock for building ``target`` (another process building it waits, then finds it done)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staged(target: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield an empty staging folder and a manifest dict to fill; on success write the manifest into the folder
    (last) and rename the folder to ``target``.

    Call under :func:`locked`. Stale staging folders of earlier, killed builds are removed first; an existing
    ``target`` is replaced only after the new one is complete.
    """
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    manifest: dict[str, Any] = {}
    try:
        yield stage, manifest
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():
            old = target.with_name(f".{target.name}.partial-old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        stage.rename(target)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


# How a full disk reads in errors that are not OSErrors: safetensors (the converted weights, the largest write)
# raises SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)").
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full: ENOSPC/EDQUOT, or a library error saying so."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(exc) for text in _DISK_FULL_TEXT)


def free_bytes(folder: Path) -> int:
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def remove_tree(folder: Path) -> None:
    """Remove ``folder`` if present (also a symlink or file)."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)


__all__ = ["MANIFEST", "free_bytes", "gib", "is_disk_full", "locked", "read_manifest", "remove_tree", "staged"]
