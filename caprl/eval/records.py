"""Append-only jsonl logs keyed by a stable id: what lets every eval stage resume after a kill.

A stage reads the ids already in its log, does only the missing work, and appends each finished record with a
flush after every batch. A kill can leave at most a last line without its newline; ``repair`` cuts it before
anything is appended, so the record is simply redone. A record id is never written twice by this class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

R = TypeVar("R", bound=BaseModel)


def drop_torn_tail(path: Path) -> bool:
    """Cut a last line that lacks its newline (a write cut short by a kill); True when something was cut."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
    return True


class AppendLog(Generic[R]):
    """A jsonl file of ``model`` records whose ``key`` field is unique."""

    def __init__(self, path: str | Path, model: type[R], key: str):
        self.path = Path(path)
        self.model = model
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(self.path)
        self._ids: set[str] | None = None

    def __iter__(self) -> Iterator[R]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield self.model.model_validate_json(line)
                except ValidationError as exc:
                    raise ValueError(f"{self.path}:{lineno}: not a {self.model.__name__} record: {exc}") from None

    def ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {getattr(r, self.key) for r in self}
        return self._ids

    def by_id(self) -> dict[str, R]:
        return {getattr(r, self.key): r for r in self}

    def append(self, records: Iterable[R]) -> int:
        """Append the records whose ids are new (flushed and fsynced together); returns how many were written."""
        ids = self.ids()
        lines = []
        for r in records:
            rid = getattr(r, self.key)
            if rid in ids:
                continue
            ids.add(rid)
            lines.append(json.dumps(r.model_dump(mode="json"), ensure_ascii=False) + "\n")
        if lines:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        return len(lines)
