"""Caption a source at scale in this process: batches to any captioner backend, results into a ``ShardStore``.

>>> source = open_source("data/images")                                           # doctest: +SKIP
>>> summary = annotate(source, load_captioner("models/captioner"), "runs/ann")    # doctest: +SKIP
>>> summary.ok, summary.failed, summary.items_per_second                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from caprl.annotate.engine import Outcome, caption_items
from caprl.annotate.sources import Source, WorkItem
from caprl.annotate.store import AnnotationRecord, ShardStore, check_run_config, write_manifest
from caprl.captioners.base import Captioner, GenerationSettings


class AnnotateSummary(BaseModel):
    """What one run did (this rank): items it owns, already done before it started, captioned, failed."""

    out: str
    items: int
    already_done: int
    ok: int = 0
    failed: int = 0
    failed_media: int = 0
    failed_captioner: int = 0
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0


def record_from_outcome(o: Outcome, prompt: str) -> AnnotationRecord:
    item = o.item
    if o.ok:
        return AnnotationRecord(
            id=item.id,
            index=item.index,
            modality=item.modality,
            media_path=item.media_path,
            status="ok",
            captions=o.texts or [],
            prompt=prompt,
        )
    return AnnotationRecord(
        id=item.id,
        index=item.index,
        modality=item.modality,
        media_path=item.media_path,
        status="failed",
        error=o.error,
        error_kind=o.kind,
        prompt=prompt,
    )


def run_config(source: Source, captioner_name: str, settings: GenerationSettings, world_size: int) -> dict[str, Any]:
    """What must stay the same across resumes of one output directory."""
    return {
        "source": source.root,
        "source_kind": source.kind,
        "captioner": captioner_name,
        "settings": dataclasses.asdict(settings),
        "world_size": world_size,
    }


def owned_todo(source: Source, done: set[str], rank: int, world_size: int) -> tuple[list[WorkItem], int]:
    """This rank's items (``index % world_size == rank``) that have no record yet, and how many already do."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    mine = [it for it in source.items if it.index % world_size == rank]
    todo = [it for it in mine if it.id not in done]
    return todo, len(mine) - len(todo)


class _Tally:
    def __init__(self, summary: AnnotateSummary, on_progress: Callable[[int, int], None] | None, total: int):
        self.summary, self.on_progress, self.total = summary, on_progress, total

    def add(self, records: Iterable[AnnotationRecord]) -> None:
        n = 0
        for r in records:
            n += 1
            if r.status == "ok":
                self.summary.ok += 1
            else:
                self.summary.failed += 1
                if r.error_kind == "media":
                    self.summary.failed_media += 1
                else:
                    self.summary.failed_captioner += 1
        if self.on_progress:
            self.on_progress(n, self.total)


def annotate(
    source: Source,
    captioner: Captioner,
    out: str | Path,
    *,
    settings: GenerationSettings | None = None,
    batch_size: int = 8,
    shard_size: int = 1000,
    rank: int = 0,
    world_size: int = 1,
    retry_failed: bool = False,
    allow_config_change: bool = False,
    prefetch_workers: int = 2,
    max_consecutive_failures: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> AnnotateSummary:
    """Caption every item of ``source`` this rank owns that ``out`` has no record of yet; returns a summary.

    A killed run is resumed by running it again with the same arguments: items with a record (a caption or a
    failure) are skipped. ``retry_failed`` tries this rank's failed items again.
    """
    settings = settings or GenerationSettings()
    out = Path(out)
    # Arguments are checked before check_run_config records them: a rejected value must not become the settings
    # the corrected command is then compared with.
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size}, {shard_size}")
    check_run_config(out, run_config(source, captioner.name, settings, world_size), allow_change=allow_config_change)
    store = ShardStore(out, rank=rank, shard_size=shard_size)
    done = store.open(retry_failed=retry_failed)
    todo, already = owned_todo(source, done, rank, world_size)
    summary = AnnotateSummary(out=str(out), items=len(todo) + already, already_done=already)
    tally = _Tally(summary, on_progress, len(todo))
    if on_progress:
        on_progress(0, len(todo))
    start = time.perf_counter()
    try:
        for outcomes in caption_items(
            todo,
            captioner,
            settings,
            root=source.root,
            batch_size=batch_size,
            prefetch_workers=prefetch_workers,
            max_consecutive_failures=max_consecutive_failures,
        ):
            records = [record_from_outcome(o, o.item.prompt) for o in outcomes]
            store.add(records)
            tally.add(records)
    finally:
        summary.seconds = time.perf_counter() - start
        store.close()
        write_manifest(out)
    return summary
