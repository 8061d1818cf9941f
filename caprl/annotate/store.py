"""Annotation output: parquet shards, a write-ahead jsonl log in front of them, and a manifest.

Layout of an output directory::

    OUT/run.json                       how the run was configured (checked on resume)
    OUT/shards/r000-000001.parquet     finished records, ``shard_size`` per file, written atomically
    OUT/pending-r000.jsonl             records made since the last shard (the write-ahead log)
    OUT/manifest.json                  shards, their row counts, ok/failed totals (rebuilt from the shards)

Why a log in front of the shards: parquet files cannot be appended to, and holding a shard's worth of captions in
memory would lose them on a kill. Each batch is appended to the log and flushed; when the log holds
``shard_size`` records they become the next shard (temp file + rename) and the log is emptied. A kill anywhere
leaves every finished record either in a shard or in the log, never both for long: on open, log records whose id
is already in a shard (a kill between writing a shard and emptying the log) are dropped, and a torn last line is
cut. So a resumed run skips exactly the items that have a record, and every item ends with exactly one.

``rank``: several processes may write one output directory, each captioning its own part of the items (``rank``
of ``world_size``); each has its own log and shard names, and readers take the union.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from caprl.annotate.appendlog import AppendLog
from caprl.data.io import atomic_write
from caprl.errors import RunStateError, describe_changes

SHARDS_DIR = "shards"
MANIFEST_NAME = "manifest.json"
RUN_NAME = "run.json"
FORMAT = "caprl.annotations"
FORMAT_VERSION = 1
_SHARD_RE = re.compile(r"^r(\d{3,})-(\d{6,})\.parquet$")


class AnnotationRecord(BaseModel):
    """One item's result: its captions, or why it has none (``status="failed"``, ``error``, ``error_kind``)."""

    id: str
    index: int
    modality: str
    media_path: str | None = None
    status: Literal["ok", "failed"]
    captions: list[str] = []
    error: str | None = None
    error_kind: str | None = None  # "media" (unreadable file) | "captioner" (the model/server rejected it)
    prompt: str

    @property
    def caption(self) -> str | None:
        return self.captions[0] if self.captions else None


SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("index", pa.int64()),
        ("modality", pa.string()),
        ("media_path", pa.string()),
        ("status", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("error", pa.string()),
        ("error_kind", pa.string()),
        ("prompt", pa.string()),
    ]
)


def shard_files(out: str | Path) -> list[Path]:
    """Every shard of an output directory (all ranks), in name order."""
    d = Path(out) / SHARDS_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _SHARD_RE.match(p.name))


def pending_logs(out: str | Path) -> list[Path]:
    return sorted(Path(out).glob("pending-r*.jsonl"))


def _write_shard(path: Path, records: list[AnnotationRecord]) -> None:
    table = pa.Table.from_pylist([r.model_dump() for r in records], schema=SCHEMA)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _read_shard(path: Path) -> list[AnnotationRecord]:
    return [AnnotationRecord.model_validate(row) for row in pq.read_table(path).to_pylist()]


def _shard_ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


class ShardStore:
    """The writer side of one rank. ``open()`` first; it returns the ids already done (by any rank)."""

    def __init__(self, out: str | Path, *, rank: int = 0, shard_size: int = 1000) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        self.out = Path(out)
        self.rank = rank
        self.shard_size = shard_size
        self.log = AppendLog(self.out / f"pending-r{rank:03d}.jsonl")
        self._pending: list[AnnotationRecord] = []
        self._next_seq = 1

    # ---- opening and resuming ---------------------------------------------------------------------------

    def open(self, *, retry_failed: bool = False) -> set[str]:
        (self.out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        self.log.repair()
        if retry_failed:
            self._drop_own_failures()
        in_shards: set[str] = set()
        for path in shard_files(self.out):
            in_shards.update(_shard_ids(path))
            m = _SHARD_RE.match(path.name)
            if m and int(m.group(1)) == self.rank:
                self._next_seq = max(self._next_seq, int(m.group(2)) + 1)
        logged = [AnnotationRecord.model_validate(r) for r in self.log.records()]
        keep: dict[str, AnnotationRecord] = {}
        for r in logged:
            if r.id not in in_shards:
                keep.setdefault(r.id, r)
        if len(keep) != len(logged):  # a kill between writing a shard and emptying the log
            self.log.rewrite(keep.values())
        self._pending = list(keep.values())
        done = in_shards | set(keep)
        for other in pending_logs(self.out):
            if other != self.log.path:
                done.update(AppendLog(other).keys())
        return done

    def _drop_own_failures(self) -> None:
        """Remove this rank's failure records so their items are tried again (each shard rewritten atomically)."""
        for path in shard_files(self.out):
            m = _SHARD_RE.match(path.name)
            if not m or int(m.group(1)) != self.rank:
                continue
            status = pq.read_table(path, columns=["status"]).column("status").to_pylist()
            if "failed" not in status:
                continue
            kept = [r for r in _read_shard(path) if r.status != "failed"]
            if kept:
                _write_shard(path, kept)
            else:
                path.unlink()
        records = [r for r in self.log.records() if r.get("status") != "failed"]
        if self.log.path.exists():
            self.log.rewrite(records)

    # ---- writing ----------------------------------------------------------------------------------------

    def add(self, records: Iterable[AnnotationRecord]) -> None:
        records = list(records)
        self.log.append(records)
        self._pending.extend(records)
        while len(self._pending) >= self.shard_size:
            self._flush(self._pending[: self.shard_size])
            self._pending = self._pending[self.shard_size :]
            # The log must hold exactly what is not in a shard yet.
            self.log.rewrite(self._pending)

    def close(self) -> None:
        """Turn what is left in the log into a last (smaller) shard."""
        if self._pending:
            self._flush(self._pending)
            self._pending = []
            self.log.rewrite([])
        if self.log.path.exists() and self.log.path.stat().st_size == 0:
            self.log.path.unlink()

    def _flush(self, records: list[AnnotationRecord]) -> None:
        path = self.out / SHARDS_DIR / f"r{self.rank:03d}-{self._next_seq:06d}.parquet"
        _write_shard(path, records)
        self._next_seq += 1


# ---- reading ----------------------------------------------------------------------------------------------


def iter_annotations(out: str | Path) -> Iterator[AnnotationRecord]:
    """Every record of an output directory: the shards, then the logs of runs still going or killed."""
    seen: set[str] = set()
    for path in shard_files(out):
        for r in _read_shard(path):
            seen.add(r.id)
            yield r
    for log in pending_logs(out):
        for raw in AppendLog(log).records():
            r = AnnotationRecord.model_validate(raw)
            if r.id not in seen:
                seen.add(r.id)
                yield r


def read_annotations(out: str | Path) -> list[AnnotationRecord]:
    """All records, ordered by their item's position in the source."""
    return sorted(iter_annotations(out), key=lambda r: r.index)


def write_manifest(out: str | Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from the shards on disk (it is a summary; the shards are the truth)."""
    out = Path(out)
    shards = []
    totals = {"ok": 0, "failed": 0}
    for path in shard_files(out):
        status = pq.read_table(path, columns=["status"]).column("status").to_pylist()
        ok = status.count("ok")
        shards.append({"file": f"{SHARDS_DIR}/{path.name}", "rows": len(status), "ok": ok, "failed": len(status) - ok})
        totals["ok"] += ok
        totals["failed"] += len(status) - ok
    pending = sum(sum(1 for _ in AppendLog(p).records()) for p in pending_logs(out))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config if config is not None else read_run_config(out),
        "shards": shards,
        "rows": totals["ok"] + totals["failed"],
        "ok": totals["ok"],
        "failed": totals["failed"],
        "pending": pending,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    atomic_write(out / MANIFEST_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return manifest


def read_run_config(out: str | Path) -> dict[str, Any]:
    path = Path(out) / RUN_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def check_run_config(out: str | Path, config: dict[str, Any], *, allow_change: bool = False) -> None:
    """Record ``config`` on the first run; on a resume, refuse a different one (mixed captions in one set)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old = read_run_config(out)
    if old and not allow_change:
        diffs = describe_changes(old, config)
        if diffs:
            raise RunStateError(
                f"{out} was started with other settings ({diffs})",
                hint="use a new output folder, or allow the change explicitly (--allow-config-change) to mix them",
            )
    if not old or allow_change:
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        atomic_write(out / RUN_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
