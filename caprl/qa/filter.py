"""``caprl qa filter``: keep the questions that need the media.

Each question is answered ``r`` times with shuffled options by a VLM that sees the media and ``r`` times by the
same VLM (or a given text-only answerer) without it; it is kept when accuracy with the media is above ``hi`` and
accuracy without it is below ``lo`` (CapRL: r = 4, hi = 0.75, lo = 0.25, both strict). Before any model call,
questions with unusable options and exact or near-duplicate questions of the same item are set aside
(``caprl.qa.checks``).

Output directory::

    OUT/stats-r000.jsonl   one QuestionRecord per question (append-only; the resume log): every answer, with and
                           without media, and why a question was set aside
    OUT/samples.parquet    a caprl dataset: the items with at least one kept question, with only those questions
    OUT/summary.json       how many questions survived and why the others did not
    OUT/run.json           the settings that determine the answers (r, seed, models, checks)

A re-run skips every question with a record, except those whose answering failed (``status="error"``: the model
or server rejected them), which are asked again.

The statistics are kept so that other thresholds can be tried without asking any model again:
``rethreshold(out, hi=..., lo=...)`` (``caprl qa filter --rethreshold``) rewrites the dataset and the summary.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from caprl.annotate.appendlog import AppendLog
from caprl.annotate.engine import TooManyFailures
from caprl.annotate.sources import WorkItem, load_item_media
from caprl.annotate.store import check_run_config, read_run_config
from caprl.captioners.base import Captioner
from caprl.data.io import Dataset, atomic_write, read_dataset, write_dataset
from caprl.data.media import MediaError
from caprl.errors import RunStateError
from caprl.lazy import Deferred
from caprl.qa.answer import AnswerTask, LegStats, TextGenerator, answer_both_ways, text_only
from caprl.qa.checks import find_duplicates, option_problem
from caprl.qa.dataset import with_mcqs
from caprl.schema import MCQ

Status = Literal["answered", "rejected", "media_error", "error"]
SUMMARY_NAME = "summary.json"

# Why a question is dropped, in the order the summary lists them.
REASONS = (
    "too_few_options",
    "duplicate_options",
    "gold_missing",
    "duplicate",
    "near_duplicate",
    "media_error",
    "error",
    "low_accuracy_with_media",
    "answerable_without_media",
    "both",
)


class FilterConfig(BaseModel):
    """What decides the answers (``r``, ``seed``, decoding, checks) and what decides keeping (``hi``, ``lo``)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    r: int = Field(default=4, ge=1)
    """Answers per question with media, and as many without."""
    hi: float = Field(default=0.75, ge=0.0, le=1.0)
    """Keep when accuracy with media > hi."""
    lo: float = Field(default=0.25, ge=0.0)
    """... and accuracy without media < lo (above 1: any)."""
    min_options: int = Field(default=3, ge=2)
    """Set aside questions with fewer options."""
    near_duplicate: float = Field(default=0.8, gt=0.0)
    """How alike two words must be spelt to count as one in near-duplicate questions (>1: off)."""
    seed: int = 0
    """Seed of the option shuffles (and of sampling)."""
    max_new_tokens: int = Field(default=16, ge=1)
    """Longest answer in tokens."""
    temperature: float = Field(default=0.0, ge=0.0)
    """Answer sampling temperature (0: greedy)."""

    def answer_settings(self) -> dict:
        """The settings a resume must share (thresholds may change: that is what ``rethreshold`` is for)."""
        return self.model_dump(exclude={"hi", "lo"})


class QuestionRecord(BaseModel):
    """One question's statistics: its answers with and without media, or why it was not asked."""

    key: str
    id: str
    qi: int
    mcq: MCQ
    status: Status
    reason: str | None = None  # for rejected / media_error / error
    duplicate_of: int | None = None
    with_media: LegStats | None = None
    without_media: LegStats | None = None
    error: str | None = None


def question_key(sample_id: str, qi: int) -> str:
    return f"{sample_id}#{qi}"


def decide(rec: QuestionRecord, hi: float, lo: float) -> str:
    """``kept`` or the reason the question is dropped (``REASONS``), from its stored statistics."""
    if rec.status != "answered":
        return rec.reason or rec.status
    assert rec.with_media is not None and rec.without_media is not None
    low_with = not rec.with_media.accuracy > hi
    high_without = not rec.without_media.accuracy < lo
    if low_with and high_without:
        return "both"
    if low_with:
        return "low_accuracy_with_media"
    if high_without:
        return "answerable_without_media"
    return "kept"


class FilterSummary(BaseModel):
    out: str
    hi: float
    lo: float
    r: int
    questions: int = 0
    kept: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    items: int = 0
    items_kept: int = 0
    mean_accuracy_with_media: float | None = None
    mean_accuracy_without_media: float | None = None
    unparsed_answers: int = 0
    asked_now: int = 0
    already_done: int = 0
    seconds: float = 0.0


def _precheck(sample_id: str, mcqs: list[MCQ], config: FilterConfig) -> dict[int, QuestionRecord]:
    """Records for the questions set aside before asking (bad options, duplicates)."""
    out: dict[int, QuestionRecord] = {}
    for qi, mcq in enumerate(mcqs):
        problem = option_problem(mcq, config.min_options)
        if problem:
            key = question_key(sample_id, qi)
            out[qi] = QuestionRecord(key=key, id=sample_id, qi=qi, mcq=mcq, status="rejected", reason=problem)
    usable = [qi for qi in range(len(mcqs)) if qi not in out]
    for pos, (reason, of) in find_duplicates([mcqs[qi] for qi in usable], config.near_duplicate).items():
        qi = usable[pos]
        key = question_key(sample_id, qi)
        out[qi] = QuestionRecord(
            key=key, id=sample_id, qi=qi, mcq=mcqs[qi], status="rejected", reason=reason, duplicate_of=usable[of]
        )
    return out


def stats_logs(out: str | Path) -> list[AppendLog]:
    return [AppendLog(p, key=lambda r: r["key"]) for p in sorted(Path(out).glob("stats-r*.jsonl"))]


def read_stats(out: str | Path) -> list[QuestionRecord]:
    """Every question record of every rank (the first record of a key wins)."""
    seen: dict[str, QuestionRecord] = {}
    for log in stats_logs(out):
        for raw in log.records():
            rec = QuestionRecord.model_validate(raw)
            seen.setdefault(rec.key, rec)
    return list(seen.values())


def filter_qa(
    data: str | Path,
    vlm: Captioner,
    out: str | Path,
    *,
    blind: TextGenerator | None = None,
    config: FilterConfig | None = None,
    batch_questions: int = 16,
    rank: int = 0,
    world_size: int = 1,
    allow_config_change: bool = False,
    max_consecutive_failures: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> FilterSummary:
    """Answer every question of ``data`` both ways (skipping those ``out`` already has), then write the kept
    questions and a summary. ``blind`` answers without media (default: ``vlm`` used text-only)."""
    config = config or FilterConfig()
    if batch_questions < 1:
        raise ValueError(f"batch_questions must be >= 1, got {batch_questions}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if blind is None:
        # A VLM not loaded yet (the CLI's) stays so until a question needs asking: a rerun with every question
        # answered loads nothing. Its text-only leg is named without loading it.
        if isinstance(vlm, Deferred):
            blind = Deferred(f"{vlm.name} (text only)", lambda: text_only(vlm.get()))  # type: ignore[assignment]
        else:
            blind = text_only(vlm)
    ds = read_dataset(data)
    out = Path(out)
    run = {
        "stage": "qa-filter",
        "data": str(Path(data).resolve()),
        "vlm": vlm.name,
        "blind": blind.name,
        "answer_settings": config.answer_settings(),
        "world_size": world_size,
    }
    check_run_config(out, run, allow_change=allow_config_change)
    log = AppendLog(out / f"stats-r{rank:03d}.jsonl", key=lambda r: r["key"])
    log.repair()
    # A question whose answering failed (model or server error) is asked again; every other record is final.
    kept_records = [r for r in log.records() if r.get("status") != "error"]
    if log.path.exists() and sum(1 for _ in log.records()) != len(kept_records):
        log.rewrite(kept_records)
    done: set[str] = set()
    for each in stats_logs(out):
        done |= each.keys()

    prechecked: list[QuestionRecord] = []
    todo: list[tuple[WorkItem, int, MCQ]] = []
    for index, sample in enumerate(ds.samples):
        if index % world_size != rank:
            continue
        rejected = _precheck(sample.id, sample.mcqs, config)
        item = WorkItem(id=sample.id, index=index, media=sample.media, prompt=sample.prompt)
        for qi, mcq in enumerate(sample.mcqs):
            key = question_key(sample.id, qi)
            if key in done:
                continue
            if qi in rejected:
                prechecked.append(rejected[qi])
            else:
                todo.append((item, qi, mcq))
    log.append(prechecked)
    total = len(todo)
    if on_progress:
        on_progress(0, total)
    start = time.perf_counter()
    failures_in_a_row = 0
    media_cache: dict[str, object] = {}
    for begin in range(0, total, batch_questions):
        chunk = todo[begin : begin + batch_questions]
        records: list[QuestionRecord] = []
        tasks: list[AnswerTask] = []
        owners: list[tuple[WorkItem, int, MCQ]] = []
        wanted = {item.id for item, _, _ in chunk}
        media_cache = {k: v for k, v in media_cache.items() if k in wanted}  # questions of an item are adjacent
        for item, qi, mcq in chunk:
            key = question_key(item.id, qi)
            if item.id not in media_cache:
                try:
                    media_cache[item.id] = load_item_media(item, ds.root)
                except MediaError as exc:
                    media_cache[item.id] = exc
            media = media_cache[item.id]
            if isinstance(media, MediaError):
                records.append(
                    QuestionRecord(
                        key=key,
                        id=item.id,
                        qi=qi,
                        mcq=mcq,
                        status="media_error",
                        reason="media_error",
                        error=str(media),
                    )
                )
                continue
            tasks.append(AnswerTask(key=key, mcq=mcq, modality=item.modality, media=media))  # type: ignore[arg-type]
            owners.append((item, qi, mcq))
        results = answer_both_ways(
            tasks,
            vlm,
            blind,
            r=config.r,
            seed=config.seed,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
        )
        for (item, qi, mcq), task, result in zip(owners, tasks, results, strict=True):
            if isinstance(result, Exception):
                failures_in_a_row += 1
                if max_consecutive_failures and failures_in_a_row >= max_consecutive_failures:
                    log.append(records)
                    raise TooManyFailures(
                        f"answering failed on {failures_in_a_row} questions in a row (last: {result}); stopping. "
                        "Fix the model or server and re-run: finished questions are kept."
                    )
                records.append(
                    QuestionRecord(
                        key=task.key, id=item.id, qi=qi, mcq=mcq, status="error", reason="error", error=str(result)
                    )
                )
                continue
            failures_in_a_row = 0
            with_media, without_media = result
            records.append(
                QuestionRecord(
                    key=task.key,
                    id=item.id,
                    qi=qi,
                    mcq=mcq,
                    status="answered",
                    with_media=with_media,
                    without_media=without_media,
                )
            )
        log.append(records)
        if on_progress:
            on_progress(len(chunk), total)
    return write_filtered(
        out, ds, hi=config.hi, lo=config.lo, asked_now=total, already_done=len(done), started=start
    )


def write_filtered(
    out: str | Path,
    ds: Dataset,
    *,
    hi: float,
    lo: float,
    asked_now: int = 0,
    already_done: int | None = None,
    started: float | None = None,
) -> FilterSummary:
    """Decide every question with ``hi``/``lo`` from the stored statistics; write the dataset and the summary.

    ``asked_now``, ``already_done`` (default: every stored question) and the time since ``started`` (a
    ``time.perf_counter()``) describe the run that got here; they are in the summary file as well."""
    out = Path(out)
    started = time.perf_counter() if started is None else started
    records = read_stats(out)
    by_item: dict[str, dict[int, QuestionRecord]] = {}
    for rec in records:
        by_item.setdefault(rec.id, {})[rec.qi] = rec
    r = int(read_run_config(out).get("answer_settings", {}).get("r", 0))
    summary = FilterSummary(out=str(out), hi=hi, lo=lo, r=r)
    reasons: Counter[str] = Counter()
    kept_samples = []
    acc_with, acc_without = [], []
    for sample in ds.samples:
        recs = by_item.get(sample.id)
        if not recs:
            continue
        summary.items += 1
        kept: list[int] = []
        for qi in sorted(recs):
            rec = recs[qi]
            verdict = decide(rec, hi, lo)
            reasons[verdict] += 1
            if rec.status == "answered":
                assert rec.with_media is not None and rec.without_media is not None
                acc_with.append(rec.with_media.accuracy)
                acc_without.append(rec.without_media.accuracy)
                summary.unparsed_answers += rec.with_media.unparsed + rec.without_media.unparsed
            if verdict == "kept":
                kept.append(qi)
        summary.questions += len(recs)
        if kept:
            summary.items_kept += 1
            stats = [
                {
                    "accuracy_with_media": recs[qi].with_media.accuracy,  # type: ignore[union-attr]
                    "accuracy_without_media": recs[qi].without_media.accuracy,  # type: ignore[union-attr]
                }
                for qi in kept
            ]
            extra = {"qa_filter": {"kept": kept, "stats": stats}}
            kept_samples.append(with_mcqs(sample, [recs[qi].mcq for qi in kept], ds.root, kept=kept, extra=extra))
    summary.kept = reasons.pop("kept", 0)
    summary.by_reason = {k: reasons[k] for k in REASONS if reasons.get(k)} | {
        k: v for k, v in reasons.items() if k not in REASONS
    }
    if acc_with:
        summary.mean_accuracy_with_media = sum(acc_with) / len(acc_with)
        summary.mean_accuracy_without_media = sum(acc_without) / len(acc_without)
    manifest = {"source": "caprl.qa.filter", "from": str(ds.root), "hi": hi, "lo": lo, "r": r}
    write_dataset(kept_samples, out, manifest=manifest)
    summary.asked_now = asked_now
    summary.already_done = len(records) - asked_now if already_done is None else already_done
    summary.seconds = time.perf_counter() - started
    text = summary.model_dump_json(indent=2) + "\n"
    atomic_write(out / SUMMARY_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return summary


def rethreshold(out: str | Path, *, hi: float, lo: float, data: str | Path | None = None) -> FilterSummary:
    """Apply other thresholds to stored statistics: no model is asked. ``data`` defaults to the filtered one."""
    run = read_run_config(out)
    if not run:
        raise RunStateError(f"{out}: no filter run here (no run.json)", hint="run caprl qa filter --data ... first")
    source = data if data is not None else run["data"]
    return write_filtered(out, read_dataset(source), hi=hi, lo=lo)
