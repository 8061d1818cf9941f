"""Read and write caprl datasets.

A dataset is a directory::

    DIR/
      samples.parquet     (or samples.jsonl) one row per Sample
      media/...           media files, referenced by paths relative to DIR
      dataset.json        small manifest: format version, counts, how it was made

Parquet rows keep MCQs as a list of structs and the media as a struct; ``references`` and ``metadata`` are
JSON strings because their keys vary from source to source. Images may also be embedded as bytes.

>>> write_dataset(samples, "out/shapes")        # doctest: +SKIP
>>> ds = read_dataset("out/shapes")              # doctest: +SKIP
>>> ds.samples[0].mcqs[0].gold_letter            # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from caprl.errors import InputError, MissingInput
from caprl.schema import Sample, SchemaError, sample_from_dict

FORMAT_VERSION = 1
PARQUET_NAME = "samples.parquet"
JSONL_NAME = "samples.jsonl"
MANIFEST_NAME = "dataset.json"

_MEDIA_TYPE = pa.struct(
    [
        ("type", pa.string()),
        ("path", pa.string()),
        ("data", pa.binary()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("max_frames", pa.int64()),
    ]
)
_MCQ_TYPE = pa.struct(
    [("question", pa.string()), ("options", pa.list_(pa.string())), ("gold", pa.int64()), ("kind", pa.string())]
)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("media", _MEDIA_TYPE),
        ("prompt", pa.string()),
        ("mcqs", pa.list_(_MCQ_TYPE)),
        ("references", pa.string()),
        ("metadata", pa.string()),
    ]
)


@dataclass
class Dataset:
    """Samples plus the directory their relative media paths resolve against."""

    samples: list[Sample]
    root: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


def sample_to_row(sample: Sample) -> dict[str, Any]:
    """Flatten a Sample into the parquet row layout (see ``SCHEMA``)."""
    m = sample.media
    if m.type == "image":
        media = {"type": "image", "path": m.path, "data": m.data, "fps": None, "num_frames": None, "max_frames": None}
    else:
        s = m.sampling
        media = {
            "type": "video",
            "path": m.path,
            "data": None,
            "fps": s.fps,
            "num_frames": s.num_frames,
            "max_frames": s.max_frames,
        }
    return {
        "id": sample.id,
        "media": media,
        "prompt": sample.prompt,
        "mcqs": [q.model_dump() for q in sample.mcqs],
        "references": json.dumps(sample.references, ensure_ascii=False, sort_keys=True),
        "metadata": json.dumps(sample.metadata, ensure_ascii=False, sort_keys=True),
    }


def row_to_record(row: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``sample_to_row``, before validation (so errors can name the row)."""
    media = dict(row.get("media") or {})
    if media.get("type") == "video":
        sampling = {k: media.get(k) for k in ("fps", "num_frames", "max_frames") if media.get(k) is not None}
        media = {"type": "video", "path": media.get("path"), "sampling": sampling}
    else:
        media = {k: media.get(k) for k in ("type", "path", "data") if media.get(k) is not None}
    record = {k: v for k, v in row.items() if k not in ("media", "references", "metadata")}
    record["media"] = media
    record["mcqs"] = [{k: v for k, v in q.items() if v is not None} for q in (row.get("mcqs") or [])]
    for key in ("references", "metadata"):
        value = row.get(key)
        record[key] = json.loads(value) if isinstance(value, str) and value else (value or {})
    return record


def samples_to_table(samples: Iterable[Sample]) -> pa.Table:
    return pa.Table.from_pylist([sample_to_row(s) for s in samples], schema=SCHEMA)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` by calling ``write(tmp)`` then renaming: readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_dataset(
    samples: Iterable[Sample],
    out_dir: str | Path,
    *,
    format: str = "parquet",
    manifest: dict[str, Any] | None = None,
) -> Path:
    """Write samples to ``out_dir`` (``samples.parquet`` or ``samples.jsonl``) and a manifest; returns the file.

    Ids must be unique. The file is written atomically (temp file, then rename), so a killed write never
    leaves a half dataset behind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = list(samples)
    seen: set[str] = set()
    for i, s in enumerate(samples):
        if s.id in seen:
            raise SchemaError(f"duplicate id {s.id!r}", row=i, field="id")
        seen.add(s.id)
    if format == "parquet":
        target = out / PARQUET_NAME
        table = samples_to_table(samples)
        atomic_write(target, lambda p: pq.write_table(table, p, compression="zstd"))
    elif format == "jsonl":
        target = out / JSONL_NAME

        def _write(p: Path) -> None:
            with open(p, "w", encoding="utf-8") as f:
                for s in samples:
                    f.write(s.model_dump_json() + "\n")

        atomic_write(target, _write)
    else:
        raise ValueError(f"unknown dataset format {format!r}: use 'parquet' or 'jsonl'")
    counts = {
        "image": sum(s.media.type == "image" for s in samples),
        "video": sum(s.media.type == "video" for s in samples),
    }
    info = {"format_version": FORMAT_VERSION, "file": target.name, "n_samples": len(samples), "modalities": counts}
    info.update(manifest or {})
    (out / MANIFEST_NAME).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file with their 1-based numbers. A line that is not UTF-8 is an
    ``InputError`` naming the file and line (not a ``UnicodeDecodeError`` from somewhere inside a run)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}, line {lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if line.strip():
                yield lineno, line


def jsonl_objects(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each line of a jsonl file; a line that is not JSON is a ``SchemaError`` naming
    the file and its 1-based line."""
    for lineno, line in text_lines(path):
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
            raise SchemaError(reason, source=str(path), line=lineno) from None


def dataset_file(path: str | Path) -> Path:
    """The samples file of a dataset directory (or ``path`` itself when it is a file)."""
    p = Path(path)
    if p.is_dir():
        for name in (PARQUET_NAME, JSONL_NAME):
            if (p / name).exists():
                return p / name
        raise MissingInput(f"{path}: not a caprl dataset (no {PARQUET_NAME} or {JSONL_NAME} in this folder)")
    if not p.exists():
        raise MissingInput(f"{path}: no such dataset file or folder")
    return p


def located_records(path: str | Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Raw records, each with where it is (``row`` index of a parquet file, or 1-based ``line`` of a jsonl one)."""
    p = dataset_file(path)
    if p.suffix == ".parquet":
        pf = pq.ParquetFile(p)
        index = 0
        for batch in pf.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield {"row": index}, row_to_record(row)
                index += 1
    elif p.suffix in (".jsonl", ".json"):
        for lineno, value in jsonl_objects(p):
            if not isinstance(value, dict):
                raise SchemaError(f"expected a JSON object, got {type(value).__name__}", source=str(p), line=lineno)
            yield {"line": lineno}, value
    else:
        raise InputError(f"{p}: unknown dataset file type (expected .parquet or .jsonl)")


def sample_at(record: dict[str, Any], index: int, where: dict[str, Any], path: str | Path) -> Sample:
    """``sample_from_dict`` whose error names the file and the row (or 1-based line) of the record."""
    try:
        return sample_from_dict(record, row=index)
    except SchemaError as exc:
        file, line = str(dataset_file(path)), where.get("line")
        raise SchemaError(exc.reason, row=exc.row, field=exc.field, id=exc.id, source=file, line=line) from exc


def read_hf_dataset(hf_dataset: Any, *, strict: bool = True, errors: list[SchemaError] | None = None) -> Dataset:
    """Samples from a Hugging Face ``datasets.Dataset`` in our layout (e.g. ``load_dataset("parquet", ...)`` of
    a ``samples.parquet``, or one pushed to the hub). Relative media paths then resolve against nothing: pass
    the dataset directory as ``root`` to the media loaders."""
    samples: list[Sample] = []
    # Arrow format hands back plain Python values: no decoding of image columns into PIL objects.
    for i, row in enumerate(hf_dataset.with_format("arrow").iter(batch_size=256)):
        for j, record in enumerate(row.to_pylist()):
            index = i * 256 + j
            try:
                samples.append(sample_from_dict(row_to_record(record), row=index))
            except SchemaError as exc:
                if strict:
                    raise
                if errors is not None:
                    errors.append(exc)
    return Dataset(samples=samples, root=None)


def read_dataset(path: str | Path, *, strict: bool = True, errors: list[SchemaError] | None = None) -> Dataset:
    """Load a dataset directory (or a single .parquet/.jsonl file).

    With ``strict`` (default) the first bad row raises a SchemaError naming its row and field; otherwise bad
    rows are skipped and appended to ``errors`` when a list is given.
    """
    p = Path(path)
    root = p if p.is_dir() else p.parent
    samples: list[Sample] = []
    for i, (where, record) in enumerate(located_records(p)):
        try:
            samples.append(sample_at(record, i, where, p))
        except SchemaError as exc:
            if strict:
                raise
            if errors is not None:
                errors.append(exc.__cause__ if isinstance(exc.__cause__, SchemaError) else exc)
    manifest_path = root / MANIFEST_NAME
    manifest = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{manifest_path}: not a valid manifest ({exc})") from None
    return Dataset(samples=samples, root=root, manifest=manifest)
