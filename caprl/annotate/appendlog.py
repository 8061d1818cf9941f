"""An append-only jsonl log of records keyed by a stable id: the resume mechanism of every long stage.

A run appends a batch of records and flushes; a re-run reads the keys already present and skips them. A kill can
leave the last line cut short (no newline): ``repair`` cuts it before anything is appended, so the torn record is
simply made again and no line is ever glued to a broken one. QA generation and the QA filter use this directly;
annotation uses it as the write-ahead log in front of its parquet shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class AppendLog:
    """``path``: the jsonl file (created on first append). ``key``: the record's stable id."""

    def __init__(self, path: str | Path, key: Callable[[dict[str, Any]], str] = lambda r: r["id"]):
        self.path = Path(path)
        self.key = key

    def repair(self) -> int:
        """Cut a last line that has no newline (a write killed half way); returns how many bytes were cut."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return 0
            f.seek(0)
            data = f.read()
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            return len(data) - keep

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record in file order (lines that are not JSON objects are skipped)."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a torn tail not yet repaired: not a record
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    yield rec

    def keys(self) -> set[str]:
        return {self.key(r) for r in self.records()}

    def append(self, records: Iterable[BaseModel | dict[str, Any]]) -> int:
        """Append records as one write, flushed to the OS (so a killed process loses nothing it returned from)."""
        lines = [
            (r.model_dump_json() if isinstance(r, BaseModel) else json.dumps(r, ensure_ascii=False)) + "\n"
            for r in records
        ]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
        return len(lines)

    def rewrite(self, records: Iterable[BaseModel | dict[str, Any]]) -> None:
        """Replace the whole log atomically (temp file, then rename)."""
        from caprl.data.io import atomic_write

        def _write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(r.model_dump_json() if isinstance(r, BaseModel) else json.dumps(r, ensure_ascii=False))
                    f.write("\n")

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, _write)
