"""Where benchmark files live and how to read the formats benchmarks ship in.

A benchmark's data is found, in order, at ``--data NAME=PATH``, at the environment variable ``CAPRL_EVAL_<NAME>``
(``CAPRL_EVAL_VIDEO_MME`` for ``video-mme``), or at ``<data root>/<NAME>`` where the data root is ``--data-root``
or ``CAPRL_EVAL_DATA``. Nothing is downloaded: when nothing is there, ``DataMissing`` says what to fetch and where
to put it. Videos referenced by a JSON/TSV file resolve against a media root (``--media-root NAME=DIR``,
``CAPRL_EVAL_<NAME>_MEDIA``, or a default folder beside the annotation file).

Which files at a data path hold a benchmark's rows is declared per benchmark as ``Layout``s (glob patterns): the
first layout with matching files is read, so a full download that also ships other files (ChartQA's
``annotations/``, DocVQA questions beside InfographicVQA's, MMBench-Video's ``_q``/``_a`` JSONs) reads only the
rows. Readers yield plain row dicts: HF parquet and arrow files (``datasets`` caches and ``save_to_disk`` folders),
the VLMEvalKit TSV (images as base64, or the ``index`` of another row holding the same image) and JSON / JSONL.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from caprl.data.io import atomic_write
from caprl.errors import MissingInput
from caprl.schema import ImageMedia

ENV_PREFIX = "CAPRL_EVAL_"
DATA_ROOT_ENV = "CAPRL_EVAL_DATA"
FORMATS = (".parquet", ".arrow", ".tsv", ".json", ".jsonl")


class DataMissing(MissingInput):
    """A benchmark's files are not where caprl looked; the message says what to download and where to put it."""

    exit_code = 2  # what `caprl eval prism` has always exited with here


def env_name(benchmark: str, suffix: str = "") -> str:
    return ENV_PREFIX + benchmark.upper().replace("-", "_") + suffix


@dataclass(frozen=True)
class Layout:
    """One way a benchmark is distributed: a name (for messages and docs) and the glob patterns, relative to the
    data path, whose files together hold the rows (``**/`` matches at any depth, including none)."""

    name: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class DataSpec:
    """How a benchmark's data is obtained: a sentence per source, and the layout caprl expects."""

    download: tuple[str, ...]
    """One line per accepted source, e.g. ``"HF dataset ahmed-masry/ChartQA (test split, parquet)"``."""
    layout: str = ""
    """What to put at the data path (a file or a folder and what is inside)."""
    media_dir: str | None = None
    """The folder holding the media files named by rows: looked for beside the data path (a folder: inside it) and
    beside the annotation file the row came from."""
    layouts: tuple[Layout, ...] = ()
    """The accepted layouts, tried in order when the data path is a folder (none: every data file below it)."""


@dataclass
class DataPaths:
    """The user's ``--data``/``--media-root``/``--data-root`` choices (environment variables fill the gaps)."""

    data: Mapping[str, str] = field(default_factory=dict)
    media: Mapping[str, str] = field(default_factory=dict)
    root: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def candidates(self, benchmark: str) -> list[tuple[str, Path]]:
        """(where it came from, path) in the order they are tried."""
        out: list[tuple[str, Path]] = []
        if benchmark in self.data:
            out.append((f"--data {benchmark}=...", Path(self.data[benchmark]).expanduser()))
        if self.env.get(env_name(benchmark)):
            out.append((f"${env_name(benchmark)}", Path(self.env[env_name(benchmark)]).expanduser()))
        root = self.root or self.env.get(DATA_ROOT_ENV)
        if root:
            out.append(("data root", Path(root).expanduser() / benchmark))
        return out

    def locate(self, benchmark: str, spec: DataSpec) -> Path:
        tried = self.candidates(benchmark)
        for _, path in tried:
            if path.exists():
                return path
        raise DataMissing(missing_message(benchmark, spec, tried))

    def media_root(self, benchmark: str) -> Path | None:
        """The media folder the user named (``--media-root`` or ``$CAPRL_EVAL_<NAME>_MEDIA``), if any."""
        if benchmark in self.media:
            return Path(self.media[benchmark]).expanduser()
        if self.env.get(env_name(benchmark, "_MEDIA")):
            return Path(self.env[env_name(benchmark, "_MEDIA")]).expanduser()
        return None


def missing_message(benchmark: str, spec: DataSpec, tried: Sequence[tuple[str, Path]]) -> str:
    lines = [f"benchmark {benchmark!r}: its data was not found."]
    if tried:
        lines.append("Looked at: " + "; ".join(f"{p} ({src})" for src, p in tried) + ".")
    else:
        lines.append(
            f"No path given: none of --data {benchmark}=PATH, ${env_name(benchmark)}, --data-root or "
            f"${DATA_ROOT_ENV} is set."
        )
    lines.append("Download one of:")
    lines.extend(f"  - {d}" for d in spec.download)
    target = tried[-1][1] if tried else Path(f"<data root>/{benchmark}")
    lines.append(f"and put it at {target}" + (f" ({spec.layout})" if spec.layout else "") + ",")
    lines.append(f"or point --data {benchmark}=PATH (or ${env_name(benchmark)}) at it.")
    if spec.layouts:
        lines.append("Layouts read (the first one found):")
        lines.extend(f"  - {lay.name}: {', '.join(lay.patterns)}" for lay in spec.layouts)
    if spec.media_dir:
        lines.append(
            f"Media files named in the rows are read from {spec.media_dir}/ beside the data unless "
            f"--media-root {benchmark}=DIR (or ${env_name(benchmark, '_MEDIA')}) says otherwise."
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ readers


# datasets' save_to_disk writes these next to its arrow files: not rows.
_NOT_ROWS = ("state.json", "dataset_info.json", "dataset_dict.json")


def _is_data_file(p: Path) -> bool:
    return p.suffix in FORMATS and p.is_file() and not p.name.startswith(".") and p.name not in _NOT_ROWS


def _glob(path: Path, pattern: str) -> list[Path]:
    found = set(path.glob(pattern))
    if pattern.startswith("**/"):  # glob's ** already matches zero folders; this keeps it so on every Python
        found |= set(path.glob(pattern[3:]))
    return [p for p in found if _is_data_file(p)]


def data_files(path: Path, layouts: Sequence[Layout] = ()) -> list[Path]:
    """The files holding the rows, sorted (so the row order is stable): ``path`` itself when it is a file; else
    the files of the first layout with any match; with no layouts, every data file below it. Raises
    ``FileNotFoundError`` naming the layouts when none matches."""
    if path.is_file():
        return [path]
    if not layouts:
        return sorted(p for p in path.rglob("*") if _is_data_file(p))
    for layout in layouts:
        files = sorted({p for pattern in layout.patterns for p in _glob(path, pattern)})
        if files:
            return files
    present = sorted(str(p.relative_to(path)) for p in path.rglob("*") if _is_data_file(p))[:5]
    raise FileNotFoundError(
        f"{path} matches none of the layouts this benchmark reads: "
        + "; ".join(f"{lay.name} ({', '.join(lay.patterns)})" for lay in layouts)
        + (f". Data files there: {', '.join(present)}" if present else ". It holds no data files")
    )


def read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
        yield from batch.to_pylist()


def read_arrow(path: Path) -> Iterator[dict[str, Any]]:
    """Arrow IPC files: the stream format (``datasets`` caches, ``save_to_disk``) or the file format."""
    with pa.memory_map(str(path)) as source:
        try:
            reader: Any = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield from reader.get_batch(i).to_pylist()
            return
        for batch in reader:
            yield from batch.to_pylist()


def read_tsv(path: Path) -> Iterator[dict[str, Any]]:
    """VLMEvalKit TSV rows; an ``image`` that is the ``index`` of another row is replaced by that row's image."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images are far longer than csv's default limit
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    images = {r.get("index"): r.get("image") for r in rows if r.get("image") and len(r["image"]) > 64}
    for r in rows:
        ref = r.get("image")
        if ref and len(ref) <= 64 and ref in images:
            r["image"] = images[ref]
        yield r


def read_json(path: Path) -> Iterator[dict[str, Any]]:
    """JSON lists, ``{"data"|"questions": [...]}`` wrappers, ``{id: record}`` maps (the id goes into ``_key``) and
    JSONL."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    for wrapper in ("data", "questions"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), list):
            data = data[wrapper]
    if isinstance(data, dict):
        data = [{"_key": k, **v} for k, v in data.items() if isinstance(v, dict)]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    yield from data


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    reader = {".parquet": read_parquet, ".arrow": read_arrow, ".tsv": read_tsv, ".json": read_json}
    reader[".jsonl"] = read_json
    if path.suffix not in reader:
        raise ValueError(f"{path}: unknown data format (expected one of {', '.join(FORMATS)})")
    for row in reader[path.suffix](path):
        row.setdefault("_file", path.name)
        row.setdefault("_path", str(path))  # where the row came from: media files are looked for beside it
        yield row


# ------------------------------------------------------------------------------------------------------- images


def image_bytes(value: Any) -> bytes:
    """Encoded image bytes from what benchmark files hold: HF ``{"bytes", "path"}`` structs, raw bytes, base64
    strings (VLMEvalKit), a list of these (the first), or a PIL image."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path") and Path(value["path"]).is_file():
            return Path(value["path"]).read_bytes()
        raise ValueError("image struct holds neither bytes nor a readable path")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("image string is not base64") from None
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()
    raise ValueError(f"cannot read an image from a {type(value).__name__}")


class MediaStore:
    """Decoded benchmark images on disk, named by content hash: identical images share one file (and so one
    caption), and items hold paths instead of megabytes of bytes."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, data: bytes) -> tuple[str, ImageMedia]:
        digest = hashlib.sha1(data).hexdigest()[:20]
        fmt = (Image.open(io.BytesIO(data)).format or "png").lower()
        path = self.root / f"{digest}.{'jpg' if fmt == 'jpeg' else fmt}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p: p.write_bytes(data))
        return f"img-{digest}", ImageMedia(path=str(path))


def pick(row: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """The first of ``names`` present (and not None/empty) in ``row``: column names differ between formats."""
    for n in names:
        v = row.get(n)
        if v is not None and not (isinstance(v, str) and v == ""):
            return v
    return default
