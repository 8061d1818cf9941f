"""Import the public CapRL data formats into a caprl dataset: the driver over the per-format converters.

Layers: ``caprl.data.containers.open_rows`` reads raw rows from any container (parquet, jsonl/json, a
``datasets`` dataset, a list); a converter per format turns one row into a ``Sample``:

- ``caprl-qa`` (alias ``verl``) and ``caprl-video-qa`` (needs ``media_root``): ``caprl.data.import_verl``;
- ``caprl-v1``: ``caprl.data.import_v1``.

Question strings and choices are read by ``caprl.data.mcq_text`` (every CapRL option style; the data's own
"cannot answer" option is dropped, since the reward adds its own). Rows that do not fit are reported with their
index and reason (``ImportErrorRecord``); ``strict`` raises a ``SchemaError`` on the first instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from caprl.data.containers import RowReadError, RowSource, open_rows
from caprl.data.convert import Converter, ImportContext, RowError, sha1
from caprl.data.import_v1 import convert_caprl_v1_row
from caprl.data.import_verl import convert_verl_row
from caprl.data.io import write_dataset
from caprl.schema import ImageMedia, Sample, SchemaError

# --------------------------------------------------------------------------------------------------------------
# Results and errors
# --------------------------------------------------------------------------------------------------------------


class ImportErrorRecord(BaseModel):
    """One input row that could not be imported: its 0-based index in the input, its id if known, and why."""

    row: int
    id: str | None = None
    field: str | None = None
    reason: str

    @classmethod
    def from_schema_error(cls, exc: SchemaError, row: int) -> ImportErrorRecord:
        return cls(row=exc.row if exc.row is not None else row, id=exc.id, field=exc.field, reason=exc.reason)

    def __str__(self) -> str:
        where = [f"row {self.row}"]
        if self.id is not None:
            where.append(f"id={self.id!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}"


@dataclass
class ImportResult:
    """Samples imported from one input, and the rows that were skipped."""

    format: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[ImportErrorRecord] = field(default_factory=list)
    n_rows: int = 0
    output: Path | None = None

    @property
    def n_imported(self) -> int:
        return len(self.samples)

    @property
    def n_skipped(self) -> int:
        return len(self.errors)


# --------------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------------

FORMATS: dict[str, Converter] = {
    "caprl-qa": convert_verl_row,
    "caprl-video-qa": convert_verl_row,
    "caprl-v1": convert_caprl_v1_row,
    "verl": convert_verl_row,
}
_MODALITY = {"caprl-video-qa": "video"}
_NEEDS_MEDIA_ROOT = {"caprl-video-qa"}


def make_context(fmt: str, media_root: str | Path | None = None) -> ImportContext:
    """Check the format name and options up front, before any row is read."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt in _NEEDS_MEDIA_ROOT and media_root is None:
        raise ValueError(f"format {fmt!r} needs a media root (--media-root): its video paths are relative")
    root = Path(media_root).expanduser().absolute() if media_root is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"media root {root} is not a directory")
    return ImportContext(format=fmt, media_root=root, modality=_MODALITY.get(fmt))


def convert_row(row: Any, index: int, ctx: ImportContext) -> Sample:
    """Convert one raw row; any problem raises a SchemaError naming the row (and id/field when known)."""
    if isinstance(row, RowReadError):
        raise SchemaError(row.reason, row=index)
    rid = None
    if isinstance(row, Mapping) and row.get("id") is not None:
        rid = str(row["id"])
    try:
        return FORMATS[ctx.format](row, index, ctx)
    except RowError as exc:
        raise SchemaError(exc.reason, row=index, field=exc.field, id=rid) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        fld = ".".join(str(p) for p in first["loc"]) or None
        raise SchemaError(first["msg"].removeprefix("Value error, "), row=index, field=fld, id=rid) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # Source data can be shaped in ways no check above foresaw; report the row instead of crashing the import.
        raise SchemaError(f"{type(exc).__name__}: {exc}", row=index, id=rid) from None


def import_rows(
    source: Any,
    fmt: str,
    *,
    media_root: str | Path | None = None,
    strict: bool = False,
    split: str | None = None,
    limit: int | None = None,
    on_row: Callable[[int], None] | None = None,
    rows: RowSource | None = None,
) -> ImportResult:
    """Import ``source`` (see ``open_rows``) in format ``fmt``; returns samples and skipped rows.

    ``limit`` caps the number of input rows read. ``strict`` raises the first row's SchemaError; otherwise bad
    rows (and later duplicates of an id) are skipped and recorded. ``on_row(i)`` is called after each row.
    """
    ctx = make_context(fmt, media_root)
    rows = rows if rows is not None else open_rows(source, split=split)
    result = ImportResult(format=fmt)
    first_seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if limit is not None and index >= limit:
            break
        result.n_rows += 1
        try:
            sample = convert_row(row, index, ctx)
            if sample.id in first_seen:
                raise SchemaError(f"duplicate id (first seen at row {first_seen[sample.id]})", row=index, id=sample.id)
            first_seen[sample.id] = index
            result.samples.append(sample)
        except SchemaError as exc:
            if strict:
                raise
            result.errors.append(ImportErrorRecord.from_schema_error(exc, index))
        if on_row is not None:
            on_row(index)
    return result


_IMAGE_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
]


def _image_suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _IMAGE_MAGIC if data.startswith(magic)), ".bin")


def extract_media(samples: list[Sample], out_dir: str | Path) -> list[Sample]:
    """Write embedded image bytes to ``out_dir/media/<sha1>.<ext>`` and point the samples at those files.

    Files are named by content, so identical images are written once and re-running is harmless.
    """
    media_dir = Path(out_dir) / "media"
    out = []
    for s in samples:
        if s.media.type == "image" and s.media.data is not None:
            name = f"{sha1(s.media.data)}{_image_suffix(s.media.data)}"
            target = media_dir / name
            if not target.exists():
                media_dir.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s.media.data)
            s = s.model_copy(update={"media": ImageMedia(path=f"media/{name}")})
        out.append(s)
    return out


ERRORS_NAME = "import_errors.jsonl"


def import_dataset(
    source: Any,
    fmt: str,
    out_dir: str | Path,
    *,
    media_root: str | Path | None = None,
    strict: bool = False,
    split: str | None = None,
    limit: int | None = None,
    extract: bool = False,
    file_format: str = "parquet",
    on_row: Callable[[int], None] | None = None,
    rows: RowSource | None = None,
) -> ImportResult:
    """Import ``source`` and write a caprl dataset to ``out_dir``; skipped rows go to ``import_errors.jsonl``.

    Nothing is written when no row could be imported (the result says why).
    """
    result = import_rows(
        source, fmt, media_root=media_root, strict=strict, split=split, limit=limit, on_row=on_row, rows=rows
    )
    out = Path(out_dir)
    errors_path = out / ERRORS_NAME
    if not result.samples:
        return result
    samples = extract_media(result.samples, out) if extract else result.samples
    manifest = {
        "source": {
            "format": fmt,
            "input": str(source) if isinstance(source, str | Path) else type(source).__name__,
            "split": split,
            "n_rows": result.n_rows,
            "n_imported": result.n_imported,
            "n_skipped": result.n_skipped,
        }
    }
    result.output = write_dataset(samples, out, format=file_format, manifest=manifest)
    result.samples = samples
    if result.errors:
        errors_path.write_text("".join(e.model_dump_json() + "\n" for e in result.errors), encoding="utf-8")
    elif errors_path.exists():
        errors_path.unlink()  # a stale report from an earlier run would describe other data
    return result
