"""Score a file of captions against a dataset's MCQs, appending results so a killed run resumes.

Captions file: jsonl, one ``{"id": SAMPLE_ID, "caption": TEXT}`` per line (optionally ``"caption_index"``; by
default the k-th caption of an id is index k). Output: jsonl, one ``RewardResult`` per caption plus its
``caption_index`` and the ``settings`` that scored it (reader and reward options); keys already in the output are
skipped on a re-run, so nothing is scored twice, and a re-run with other settings is refused (a file of rewards
from two modes or seeds would be silently wrong).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from caprl.data.io import read_dataset, text_lines
from caprl.errors import InputError, RunStateError, describe_changes
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
    """One message per caption left out (malformed line, unknown id, sample without MCQs)."""
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
    """Caption rows with their index filled in, and one message per malformed line (file, 1-based line, reason).
    A file that is not UTF-8 text, or holds no line at all, is an ``InputError``."""
    rows, bad, seen = [], [], Counter()
    for lineno, line in text_lines(path):
        try:
            row = CaptionRow.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "row"
            bad.append(f"{path}, line {lineno}: {where}: {err['msg']}")
            continue
        if row.caption_index is None:
            row.caption_index = seen[row.id]
        seen[row.id] += 1
        rows.append(row)
    if not rows and not bad:
        raise InputError(f"{path}: no captions (the file is empty)")
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


def _done_keys(out: Path, settings: dict[str, Any] | None) -> set[tuple[str, int]]:
    """Keys already scored in ``out``; with ``settings``, a row scored with other settings is a ``RunStateError``."""
    keys: set[tuple[str, int]] = set()
    if not out.exists():
        return keys
    for lineno, line in text_lines(out):
        try:
            rec = json.loads(line)
            key = (rec["id"], rec["caption_index"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill: its caption is scored again
        if settings is not None and rec.get("settings") != settings:
            old = rec.get("settings")
            diffs = describe_changes(old, settings) if isinstance(old, dict) else "rows without recorded settings"
            raise RunStateError(
                f"{out} holds rewards scored with other settings (line {lineno}: {diffs})",
                hint="give another --out, or delete the file to score again",
            )
        keys.add(key)
    return keys


def score_captions(
    data: str | Path,
    captions: str | Path,
    engine: RewardEngine | Callable[[], RewardEngine],
    out: str | Path,
    *,
    settings: dict[str, Any] | None = None,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Score every caption in ``captions`` against the MCQs of its sample in ``data``; append to ``out``.

    ``engine`` may be a function that builds it: it is called only when there is something to score. Every row
    records ``settings`` (default: the engine's reward options and reader name), and rows already in ``out``
    must have been scored with the same."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if settings is None:
        if not isinstance(engine, RewardEngine):
            raise TypeError("give settings when the engine is built later")
        settings = engine_settings(engine)
    ds = read_dataset(data)
    by_id = {s.id: s for s in ds.samples}
    rows, bad = read_captions(captions)
    summary = BatchSummary(bad_rows=bad)
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: a folder; the output is a .jsonl file")
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(out)
    done = _done_keys(out, settings)
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
    if not todo:
        return summary
    if not isinstance(engine, RewardEngine):
        engine = engine()
    with open(out, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            items = [
                RewardItem(
                    caption=r.caption,
                    mcqs=by_id[r.id].mcqs,
                    modality=by_id[r.id].modality,
                    id=r.id,
                    scene=by_id[r.id].metadata.get("scene"),
                )  # fmt: skip
                for r in chunk
            ]
            for row, result in zip(chunk, engine.score(items), strict=True):
                record = {"caption_index": row.caption_index, **result.model_dump(), "settings": settings}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                summary.scored += 1
                summary.rewards.append(result.reward)
                summary.accuracies.append(result.accuracy)
                summary.parse_failures += result.parse_failures
            f.flush()
            if on_progress:
                on_progress(len(chunk), len(todo))
    return summary


def engine_settings(engine: RewardEngine, reader: str | None = None) -> dict[str, Any]:
    """What a row records about how it was scored: the reader and every reward option."""
    return {"reader": reader or engine.reader.name, **engine.config.model_dump(mode="json")}
