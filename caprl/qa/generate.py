"""``caprl qa generate``: a VLM writes k MCQs per image or video; resumable, shardable, nothing dropped silently.

Output directory::

    OUT/generated-r000.jsonl   one GeneratedRecord per item (append-only; the resume log), raw reply included
    OUT/samples.parquet        a caprl dataset: the items that got questions, with those questions as MCQs
    OUT/dataset.json           its manifest
    OUT/run.json               the settings (a resume with other settings is refused)

Every item gets exactly one record: ``ok`` (MCQs parsed, maybe with some questions rejected: ``problems``),
``unparseable`` (no question found in the reply), ``no_valid_questions`` (questions found, none usable),
``media_error`` (the file cannot be read) or ``error`` (the captioner rejected the item). The reply is kept in
``raw`` for every item, so a prompt or parser change can be judged against real replies.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from caprl.annotate.appendlog import AppendLog
from caprl.annotate.engine import Outcome, caption_items
from caprl.annotate.sources import Source, WorkItem, open_source
from caprl.annotate.store import check_run_config, read_run_config
from caprl.captioners.base import Captioner, GenerationSettings
from caprl.data.io import read_dataset, write_dataset
from caprl.qa.dataset import with_mcqs
from caprl.qa.parse import parse_mcqs
from caprl.qa.prompts import generation_prompt
from caprl.schema import MCQ, Sample

Status = Literal["ok", "unparseable", "no_valid_questions", "media_error", "error"]
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=1024, temperature=0.0)


class GeneratedRecord(BaseModel):
    """One item's result. ``raw`` is the VLM's reply (None when it never got to answer)."""

    id: str
    index: int
    status: Status
    mcqs: list[MCQ] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    repairs: list[str] = Field(default_factory=list)
    raw: str | None = None
    error: str | None = None


class GenerateSummary(BaseModel):
    out: str
    items: int
    already_done: int
    by_status: dict[str, int] = Field(default_factory=dict)
    questions: int = 0
    repairs: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    dataset_items: int = 0
    dataset_questions: int = 0


def record_from_outcome(o: Outcome, k: int) -> GeneratedRecord:
    item = o.item
    if not o.ok:
        failed: Status = "media_error" if o.kind == "media" else "error"
        return GeneratedRecord(id=item.id, index=item.index, status=failed, error=o.error)
    raw = (o.texts or [""])[0]
    parsed = parse_mcqs(raw, k=k)
    status: Status = "ok" if parsed.mcqs else "no_valid_questions" if parsed.found else "unparseable"
    return GeneratedRecord(
        id=item.id,
        index=item.index,
        status=status,
        mcqs=parsed.mcqs,
        problems=parsed.problems,
        repairs=parsed.repairs,
        raw=raw,
    )


def logs(out: str | Path) -> list[AppendLog]:
    return [AppendLog(p) for p in sorted(Path(out).glob("generated-r*.jsonl"))]


def read_generated(out: str | Path) -> list[GeneratedRecord]:
    """Every record of every rank, in source order (the first record of an id wins)."""
    seen: dict[str, GeneratedRecord] = {}
    for log in logs(out):
        for raw in log.records():
            rec = GeneratedRecord.model_validate(raw)
            seen.setdefault(rec.id, rec)
    return sorted(seen.values(), key=lambda r: r.index)


def generate_qa(
    data: str | Path,
    captioner: Captioner,
    out: str | Path,
    *,
    k: int = 5,
    n_options: int = 4,
    settings: GenerationSettings | None = None,
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    retry_failed: bool = False,
    allow_config_change: bool = False,
    limit: int | None = None,
    prefetch_workers: int = 2,
    max_consecutive_failures: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenerateSummary:
    """Ask ``captioner`` for ``k`` MCQs about every item of ``data`` that ``out`` has no record of; write the
    records, then the dataset of all items with questions (all ranks' records so far)."""
    settings = settings or DEFAULT_SETTINGS
    # Arguments are checked before check_run_config records them (a rejected k must not become the settings the
    # corrected command is compared with).
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompts = {m: generation_prompt(k, m, n_options=n_options) for m in ("image", "video")}
    source = open_source(data, limit=limit)
    out = Path(out)
    config = {
        "stage": "qa-generate",
        "source": source.root,
        "captioner": captioner.name,
        "k": k,
        "n_options": n_options,
        "settings": dataclasses.asdict(settings),
        "world_size": world_size,
    }
    check_run_config(out, config, allow_change=allow_config_change)
    log = AppendLog(out / f"generated-r{rank:03d}.jsonl")
    log.repair()
    if retry_failed and log.path.exists():
        log.rewrite([r for r in log.records() if r.get("status") == "ok"])
    done: set[str] = set()
    for each in logs(out):
        done |= each.keys()
    mine = [it for it in source.items if it.index % world_size == rank]
    todo = [it for it in mine if it.id not in done]
    summary = GenerateSummary(out=str(out), items=len(mine), already_done=len(mine) - len(todo))
    if on_progress:
        on_progress(0, len(todo))
    statuses: Counter[str] = Counter()
    repairs: Counter[str] = Counter()

    def prompt(item: WorkItem) -> str:
        return prompts[item.modality]

    start = time.perf_counter()
    for outcomes in caption_items(
        todo,
        captioner,
        settings,
        root=source.root,
        batch_size=batch_size,
        prompt=prompt,
        prefetch_workers=prefetch_workers,
        max_consecutive_failures=max_consecutive_failures,
    ):
        records = [record_from_outcome(o, k) for o in outcomes]
        log.append(records)
        for r in records:
            statuses[r.status] += 1
            repairs.update(r.repairs)
            summary.questions += len(r.mcqs)
        if on_progress:
            on_progress(len(records), len(todo))
    summary.seconds = time.perf_counter() - start
    summary.by_status = dict(statuses)
    summary.repairs = dict(repairs)
    summary.dataset_items, summary.dataset_questions = write_generated_dataset(out, source)
    return summary


def _source_samples(source: Source) -> list[Sample]:
    if source.kind == "dataset":
        return read_dataset(source.root).samples
    return [Sample(id=it.id, media=it.media, prompt=it.prompt) for it in source.items]


def write_generated_dataset(out: str | Path, source: Source | None = None) -> tuple[int, int]:
    """(Re)write ``OUT/samples.parquet`` from the records: items with at least one MCQ, in source order."""
    out = Path(out)
    if source is None:
        source = open_source(read_run_config(out)["source"])
    by_id = {s.id: s for s in _source_samples(source)}
    config = read_run_config(out)
    samples = [
        with_mcqs(by_id[r.id], r.mcqs, source.root, extra={"qa_generated_by": config.get("captioner")})
        for r in read_generated(out)
        if r.status == "ok" and r.id in by_id
    ]
    manifest = {"source": "caprl.qa.generate", "from": source.root, "k": config.get("k")}
    write_dataset(samples, out, manifest=manifest)
    return len(samples), sum(len(s.mcqs) for s in samples)
