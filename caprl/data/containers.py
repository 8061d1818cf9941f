"""Raw rows from any container the public CapRL data comes in: a parquet file, a directory of parquet or jsonl
files, a jsonl/json file, a ``datasets.Dataset``/``DatasetDict`` or a directory written by ``save_to_disk``, or a
plain list of rows. The per-format converters (``caprl.data.import_verl``, ``caprl.data.import_v1``) turn each
row into a ``Sample``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROW_BATCH = 256


@dataclass(frozen=True)
class RowReadError:
    """Stands in for a row the container itself could not parse (a bad jsonl line), so reading can go on."""

    reason: str


@dataclass
class RowSource:
    """Raw rows of an input, and how many there are when that is known up front (for progress bars)."""

    rows: Iterable[Any]
    total: int | None
    description: str

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


def _is_hf_dataset(obj: Any) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return False
    return isinstance(obj, datasets.Dataset | datasets.DatasetDict)


def _pick_split(dsd: Any, split: str | None) -> Any:
    names = list(dsd.keys())
    if split is not None:
        if split not in dsd:
            raise ValueError(f"no split {split!r} in this dataset (splits: {', '.join(names)})")
        return dsd[split]
    if len(names) == 1:
        return dsd[names[0]]
    raise ValueError(f"the dataset has several splits ({', '.join(names)}): choose one with split=/--split")


def _hf_rows(ds: Any) -> Iterator[dict[str, Any]]:
    # Arrow format gives the stored structs ({bytes, path}) rather than decoded PIL images, so image bytes
    # arrive untouched (no re-encoding) whatever features the dataset declares.
    for table in ds.with_format("arrow").iter(batch_size=ROW_BATCH):
        yield from table.to_pylist()


def _hf_source(obj: Any, split: str | None, description: str) -> RowSource:
    import datasets

    ds = _pick_split(obj, split) if isinstance(obj, datasets.DatasetDict) else obj
    return RowSource(rows=_hf_rows(ds), total=len(ds), description=description)


def _parquet_rows(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for p in paths:
        for batch in pq.ParquetFile(p).iter_batches(batch_size=ROW_BATCH):
            yield from batch.to_pylist()


def _jsonl_rows(paths: list[Path]) -> Iterator[Any]:
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    yield RowReadError(f"{p.name} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno})")


def _json_rows(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a .json input must hold a list of rows, found {type(data).__name__}")
    return data


def _count_jsonl(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        with open(p, encoding="utf-8") as f:
            n += sum(1 for line in f if line.strip())
    return n


def _matches_split(path: Path, root: Path, split: str) -> bool:
    rel = path.relative_to(root)
    if split in rel.parts[:-1]:
        return True
    name = path.name
    return any(name.startswith(split + sep) for sep in ("-", ".", "_"))


def _file_source(paths: list[Path], description: str) -> RowSource:
    suffixes = {p.suffix for p in paths}
    if suffixes == {".parquet"}:
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        return RowSource(rows=_parquet_rows(paths), total=total, description=description)
    if suffixes == {".jsonl"}:
        return RowSource(rows=_jsonl_rows(paths), total=_count_jsonl(paths), description=description)
    if suffixes == {".json"} and len(paths) == 1:
        rows = _json_rows(paths[0])
        return RowSource(rows=rows, total=len(rows), description=description)
    raise ValueError(f"{description}: unsupported input ({', '.join(sorted(suffixes))}); use .parquet, .jsonl or .json")


def _dir_source(root: Path, split: str | None) -> RowSource:
    import datasets

    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        return _hf_source(datasets.load_from_disk(str(root)), split, str(root))
    for pattern in ("*.parquet", "*.jsonl"):
        files = sorted(p for p in root.rglob(pattern) if p.is_file())
        if split is not None:
            files = [p for p in files if _matches_split(p, root, split)]
        if files:
            return _file_source(files, str(root))
    which = f" for split {split!r}" if split else ""
    raise FileNotFoundError(f"{root}: no parquet or jsonl files{which}, and not a datasets.save_to_disk directory")


def open_rows(source: Any, *, split: str | None = None) -> RowSource:
    """Raw rows of ``source``: a path (file or directory), a ``datasets.Dataset``/``DatasetDict``, or a list."""
    if _is_hf_dataset(source):
        return _hf_source(source, split, type(source).__name__)
    if isinstance(source, str | Path):
        p = Path(source).expanduser()
        if p.is_dir():
            return _dir_source(p, split)
        if not p.exists():
            raise FileNotFoundError(f"{source}: no such file or directory")
        return _file_source([p], str(p))
    if isinstance(source, list | tuple):
        return RowSource(rows=list(source), total=len(source), description="rows")
    raise TypeError(f"cannot read rows from {type(source).__name__}: give a path, a datasets.Dataset or a list")
