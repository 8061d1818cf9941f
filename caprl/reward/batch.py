"""Score a file of captions against a dataset's MCQs, appending results so a killed run resumes.

Captions file: jsonl, one ``{"id": SAMPLE_ID, "caption": TEXT}`` per line (optionally ``"caption_index"``; by
default the k-th caption of an id is index k). Output: jsonl, one ``RewardResult`` per caption plus its
``caption_index``; keys already in the output are skipped on a re-run, so nothing is scored twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from caprl.data.io import read_dataset
from caprl.reward.engine import RewardEngine, RewardItem


class CaptionRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    caption: str
    caption_index: int | None = None


@dataclass
class BatchSummary:
    scored: int = 0
    skipped_existing: int = 0
    bad_rows: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    parse_failures: int = 0

    @property
    def mean_reward(self) -> float | None:
        return sum(self.rewards) / len(self.rewards) if self.rewards else None

    @property
    def mean_accuracy(self) -> float | None:
        return sum(self.accuracies) / len(self.accuracies) if self.accuracies else None


def read_captions(path: str | Path) -> tuple[list[CaptionRow], list[str]]:
    """Caption rows with their index filled in, and one message per malformed line (line number + reason)."""
    rows, bad, seen = [], [], Counter()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = CaptionRow.model_validate_json(line)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "row"
                bad.append(f"line {lineno}: {where}: {err['msg']}")
                continue
            if row.caption_index is None:
                row.caption_index = seen[row.id]
            seen[row.id] += 1
            rows.append(row)
    return rows, bad


def _drop_torn_tail(out: Path) -> None:
    """A run killed mid-write leaves a last line without its newline: cut it, so appends start on a clean line
    (its caption is simply scored again)."""
    if not out.exists() or out.stat().st_size == 0:
        return
    with open(out, "rb+") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        f.truncate(data.rfind(b"\n") + 1)


def _done_keys(out: Path) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    if not out.exists():
        return keys
    with open(out, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                keys.add((rec["id"], rec["caption_index"]))
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut short by a kill: its caption is scored again
    return keys


def score_captions(
    data: str | Path,
    captions: str | Path,
    engine: RewardEngine,
    out: str | Path,
    *,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Score every caption in ``captions`` against the MCQs of its sample in ``data``; append to ``out``."""
    ds = read_dataset(data)
    by_id = {s.id: s for s in ds.samples}
    rows, bad = read_captions(captions)
    summary = BatchSummary(bad_rows=bad)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(out)
    done = _done_keys(out)
    todo = []
    for row in rows:
        if (row.id, row.caption_index) in done:
            summary.skipped_existing += 1
        elif row.id not in by_id:
            summary.bad_rows.append(f"caption for id {row.id!r}: no such sample in {data}")
        elif not by_id[row.id].mcqs:
            summary.bad_rows.append(f"caption for id {row.id!r}: the sample has no MCQs")
        else:
            todo.append(row)
    if on_progress:
        on_progress(0, len(todo))
    with open(out, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            items = [
                RewardItem(caption=r.caption, mcqs=by_id[r.id].mcqs, modality=by_id[r.id].modality, id=r.id)
                for r in chunk
            ]
            for row, result in zip(chunk, engine.score(items), strict=True):
                record = {"caption_index": row.caption_index, **result.model_dump()}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                summary.scored += 1
                summary.rewards.append(result.reward)
                summary.accuracies.append(result.accuracy)
                summary.parse_failures += result.parse_failures
            f.flush()
            if on_progress:
                on_progress(len(chunk), len(todo))
    return summary
